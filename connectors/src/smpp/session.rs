//! One SMPP bind, kept alive: connect, bind (transceiver, transmitter or receiver),
//! a window of outstanding requests matched by sequence number with response
//! timeouts, `enquire_link` keepalive (a link that stops answering is torn down),
//! reconnect with exponential backoff and jitter, and a clean `unbind` on shutdown
//! once the window drained.
//!
//! ESME_RTHROTTLED / ESME_RMSGQFUL make the bind slow down to what the SMSC
//! accepts instead of stopping it: each bind keeps a congestion window (additive
//! increase, multiplicative decrease): every accepted submit widens it by
//! 1/window up to the configured `window`, a throttle halves it (once per burst).
//! The throttled submit itself is sent again by the bind, ahead of new ones, up
//! to [`MAX_RESENDS`] times, so a throttle costs neither an attempt nor a trip
//! back through the queue, and a recipient's messages keep their order. Only when
//! the window is down to one and the SMSC still throttles does the bind pause (100
//! ms, doubling while the SMSC keeps throttling, at most 5 s, reset by the next
//! accepted submit), and a submit throttled more often than that is given back
//! to its caller as [`SubmitError::Throttled`].
//!
//! Inbound `deliver_sm` and `data_sm` (receipts) are handed to the consumer with an
//! acknowledgement channel; the response goes back only when the consumer says the
//! receipt is stored, so a crash in between makes the SMSC send it again instead of
//! losing it.
//!
//! Requests in flight when a bind drops fail with [`SubmitError::Disconnected`]; the
//! caller retries them (the gateway's queue does), so nothing is lost.
//!
//! Two requests go out this way: `submit_sm` ([`Session::submit`]) and `query_sm`
//! ([`Session::query`], SMPP 3.4 §4.8: what became of a message the SMSC accepted,
//! asked when its receipt does not come). They share the window, the response
//! timeout and the throttle pause; only a `submit_sm` can deliver a message twice,
//! so only submits count as abandoned or orphaned.
//!
//! # Reads, writes and receipt hand-off never wait for each other
//!
//! One connection is two tasks. The *session loop* reads the socket, matches
//! responses, keeps the timers and hands receipts on; it never awaits anything but
//! its `select!`, so a peer or a consumer that stops cannot stop it. The *writer*
//! owns the write half and drains one bounded queue that only the session loop
//! feeds, always with `try_send`.
//!
//! * **Writes that make no progress.** A write that has not moved a byte for
//!   [`STALL_VISIBLE`] marks the bind *stalled*: [`Session::is_bound`] turns false
//!   (health and readiness show it, the connector stops choosing it) and requests
//!   queued for it fail fast with [`SubmitError::Disconnected`] without being
//!   written, so the caller uses another bind. After [`SessionConfig::write_timeout`]
//!   without progress the bind is declared dead and reconnected. The socket's send
//!   buffer is kept small ([`SEND_BUFFER`]) so that a write stops progressing soon
//!   after the SMSC stops reading, not megabytes later; and a request left without
//!   an answer sends an `enquire_link` probe, so an SMSC that keeps sending to us but
//!   answers nothing is found dead even before the buffers fill.
//! * **Bounded memory.** Submit frames in the queue are bounded by the window
//!   (a submit is queued only when the window and the queue have room); answers to
//!   the SMSC's requests are small and the queue has room for one per receipt in
//!   progress plus a margin. An answer that does not fit is dropped (and counted):
//!   the queue is only full when the writer has been stuck for all of it, the stall
//!   timer is already running, and the SMSC re-sends a `deliver_sm` it got no answer for.
//! * **Receipts.** At most [`SessionConfig::max_receipts`] receipts per bind are with
//!   the consumer unanswered. One beyond that is answered `ESME_RX_T_APPN` at once:
//!   the SMSC keeps it and delivers it again at its own pace, while this loop goes
//!   on reading `submit_sm_resp`. So a backlog the consumer is slow with (receipts
//!   for ids it does not know are held seconds before being given up) drains at the
//!   SMSC's re-send pace and never holds up submits, and nothing here grows with it.
//!   Not reading the socket instead was rejected: the responses to our submits are
//!   behind those receipts in the same byte stream.
//!
//! # A request whose caller has gone is never sent
//!
//! A request waits in the handle's queue while the window is full or the bind is
//! throttled. If its caller gives up meanwhile (the gateway's dispatch timeout drops
//! the future), it is discarded when dequeued instead of written, because the
//! caller's retry sends it again and the recipient would get it twice. A request
//! that was written is tracked to its response; if nobody waits for it any more the
//! outcome is logged as uncertain for the gateway and counted
//! ([`Session::orphaned`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusmpp::pdus::{
    BindReceiver, BindTransceiver, BindTransmitter, DataSm, DataSmResp, DeliverSm, DeliverSmResp,
    QuerySm, SubmitSm,
};
use rusmpp::types::COctetString;
use rusmpp::values::{InterfaceVersion, Npi, Ton};
use rusmpp::{Command, CommandStatus, Pdu};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::frame::{self, FrameLimits};
use super::status;

/// The kind of bind, SMPP 3.4 §4.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BindType {
    /// Submits and receipts on one connection.
    #[default]
    Transceiver,
    /// Submits only.
    Transmitter,
    /// Receipts (and MO messages) only.
    Receiver,
}

impl BindType {
    /// The bind request's command_id; its response is this | 0x8000_0000.
    fn command_id(self) -> u32 {
        match self {
            BindType::Receiver => 0x0000_0001,
            BindType::Transmitter => 0x0000_0002,
            BindType::Transceiver => 0x0000_0009,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BindType::Receiver => "bind_receiver",
            BindType::Transmitter => "bind_transmitter",
            BindType::Transceiver => "bind_transceiver",
        }
    }
}

/// How to reach and bind to one SMSC.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// `host:port`.
    pub addr: String,
    pub system_id: String,
    pub password: String,
    pub system_type: String,
    pub bind_type: BindType,
    /// address_range in the bind (at most 40 characters).
    pub address_range: String,
    /// 0x34 by default.
    pub interface_version: u8,
    /// Most requests outstanding at once on this bind.
    pub window: usize,
    /// Longest wait for any response.
    pub response_timeout: Duration,
    /// Idle time after which an `enquire_link` is sent.
    pub enquire_link: Duration,
    /// A write that makes no progress this long (the SMSC stopped reading) means
    /// the link is dead: it is dropped and reconnected.
    pub write_timeout: Duration,
    /// Most `deliver_sm`/`data_sm` handed to the consumer and not yet answered;
    /// more are answered `ESME_RX_T_APPN` (the SMSC delivers them again later).
    pub max_receipts: usize,
    pub connect_timeout: Duration,
    /// Reconnect backoff bounds (exponential with jitter between them).
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    pub limits: FrameLimits,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            addr: "127.0.0.1:2775".into(),
            system_id: "goniec".into(),
            password: String::new(),
            system_type: String::new(),
            bind_type: BindType::Transceiver,
            address_range: String::new(),
            interface_version: 0x34,
            window: 100,
            response_timeout: Duration::from_secs(10),
            enquire_link: Duration::from_secs(30),
            write_timeout: Duration::from_secs(15),
            max_receipts: 400,
            connect_timeout: Duration::from_secs(5),
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            limits: FrameLimits::default(),
        }
    }
}

/// Why a submit did not get a message id (or a query_sm no answer).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// ESME_RTHROTTLED or ESME_RMSGQFUL: slow down and retry.
    #[error("SMSC asks to slow down (status {status:#x})")]
    Throttled { status: u32 },
    /// Any other non-zero command_status: the SMSC refused this message.
    #[error("SMSC refused the message (status {status:#x})")]
    Rejected { status: u32 },
    /// No response within the response timeout; the SMSC may or may not have it.
    #[error("no submit_sm_resp within {0:?}")]
    Timeout(Duration),
    /// The bind dropped with the request in flight.
    #[error("bind dropped before the response")]
    Disconnected,
    /// The session is stopped.
    #[error("session stopped")]
    Stopped,
}

/// A `deliver_sm` or `data_sm` from the SMSC. Send the command_status to answer with
/// on `ack` (0 once the receipt is stored); dropping `ack` answers ESME_RSYSERR so
/// the SMSC redelivers.
#[derive(Debug)]
pub struct Inbound {
    pub pdu: InboundPdu,
    pub ack: oneshot::Sender<u32>,
}

/// The two PDUs an SMSC delivers receipts and MO messages with.
#[derive(Debug, Clone)]
pub enum InboundPdu {
    Deliver(DeliverSm),
    Data(DataSm),
}

/// What the SMSC answered a `query_sm` with (SMPP 3.4 §4.8.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryAnswer {
    /// The `message_state` value (1 ENROUTE ... 8 REJECTED; see
    /// [`super::receipt::stat_from_message_state`]).
    pub message_state: u8,
    /// The network error code the SMSC reports for it (0 when none).
    pub error_code: u8,
    /// When it reached its final state (`YYMMDDhhmmsstnnp`), empty while it has not.
    pub final_date: String,
}

/// A request's answer: the message id of a submit, or a query's state.
#[derive(Debug)]
enum Answer {
    MessageId(String),
    State(QueryAnswer),
}

/// Which request a pending sequence number belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Submit,
    Query,
}

struct Request {
    pdu: Pdu,
    kind: Kind,
    reply: oneshot::Sender<Result<Answer, SubmitError>>,
}

/// State shared with the handle.
#[derive(Default)]
struct Shared {
    bound: AtomicBool,
    /// A write has made no progress for [`STALL_VISIBLE`]; cleared by progress or
    /// when the connection ends.
    write_stalled: AtomicBool,
    /// The SMSC asked this bind to slow down and the pause has not ended.
    throttled: AtomicBool,
    last_error: Mutex<Option<String>>,
    /// Binds lost after being established (dead links, SMSC unbinds, resets).
    drops: AtomicU64,
    /// Requests discarded unsent because their caller had gone.
    abandoned: AtomicU64,
    /// Requests written whose caller had gone by the time the outcome was known.
    orphaned: AtomicU64,
    /// `deliver_sm`/`data_sm` answered ESME_RX_T_APPN because the consumer had
    /// [`SessionConfig::max_receipts`] unanswered.
    receipts_deferred: AtomicU64,
    /// For the operator console (see [`Session::status`]), kept by the
    /// connection task: unix ms of the last change between bound and not;
    /// requests in flight and the congestion window (sampled every tick);
    /// throttle answers; the current throttle pause (ms); the average submit
    /// answer time (µs, exponentially weighted).
    since_ms: AtomicI64,
    in_flight: AtomicUsize,
    cwnd: AtomicUsize,
    throttles: AtomicU64,
    pause_ms: AtomicU64,
    response_us: AtomicU64,
    /// While not bound: the wait before the next connect attempt (ms).
    reconnect_ms: AtomicU64,
}

/// What [`Session::status`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionStatus {
    pub since_ms: i64,
    pub in_flight: usize,
    pub window: usize,
    pub throttles: u64,
    pub pause_ms: u64,
    /// `None` before the first answer.
    pub response_us: Option<u64>,
    /// While not bound: the current reconnect back-off (ms).
    pub reconnect_ms: u64,
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Handle to one bind. Cheap to clone; the connection lives in a background task.
#[derive(Clone)]
pub struct Session {
    requests: mpsc::Sender<Request>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("bound", &self.is_bound())
            .finish()
    }
}

impl Session {
    /// Start connecting and binding in the background; reconnects until `shutdown`.
    /// Returns the handle and the task, which ends after the unbind.
    pub fn spawn(
        cfg: SessionConfig,
        inbound: mpsc::Sender<Inbound>,
        shutdown: CancellationToken,
    ) -> (Session, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(cfg.window.max(1));
        let shared = Arc::new(Shared::default());
        shared.since_ms.store(unix_ms(), Ordering::Relaxed);
        let task = tokio::spawn(run(cfg, rx, inbound, shared.clone(), shutdown));
        (
            Session {
                requests: tx,
                shared,
            },
            task,
        )
    }

    /// True while bound and able to submit: false before the bind, while
    /// reconnecting, and while writes to the SMSC are stalled.
    pub fn is_bound(&self) -> bool {
        self.shared.bound.load(Ordering::Relaxed) && !self.is_write_stalled()
    }

    /// True while a write to the SMSC has made no progress for [`STALL_VISIBLE`]
    /// (the SMSC is not reading); the bind is torn down at the write timeout.
    pub fn is_write_stalled(&self) -> bool {
        self.shared.write_stalled.load(Ordering::Relaxed)
    }

    /// Why this bind cannot submit now, for health and readiness; `None` when it can.
    pub fn down_reason(&self) -> Option<String> {
        if self.is_write_stalled() {
            Some("writes to the SMSC are stalled (it is not reading)".into())
        } else if self.is_bound() {
            None
        } else {
            Some(self.last_error().unwrap_or_else(|| "not bound yet".into()))
        }
    }

    /// Requests discarded without being sent because their caller had gone.
    pub fn abandoned(&self) -> u64 {
        self.shared.abandoned.load(Ordering::Relaxed)
    }

    /// Requests sent whose caller had gone before their outcome was known (the
    /// gateway may have sent the message again).
    pub fn orphaned(&self) -> u64 {
        self.shared.orphaned.load(Ordering::Relaxed)
    }

    /// Receipts answered ESME_RX_T_APPN because too many were with the consumer.
    pub fn receipts_deferred(&self) -> u64 {
        self.shared.receipts_deferred.load(Ordering::Relaxed)
    }

    /// True while the SMSC's last throttle response pauses this bind.
    pub fn is_throttled(&self) -> bool {
        self.shared.throttled.load(Ordering::Relaxed)
    }

    /// Counters for the operator console.
    pub fn status(&self) -> SessionStatus {
        let s = &self.shared;
        let us = s.response_us.load(Ordering::Relaxed);
        SessionStatus {
            since_ms: s.since_ms.load(Ordering::Relaxed),
            in_flight: s.in_flight.load(Ordering::Relaxed),
            window: s.cwnd.load(Ordering::Relaxed),
            throttles: s.throttles.load(Ordering::Relaxed),
            pause_ms: s.pause_ms.load(Ordering::Relaxed),
            response_us: (us > 0).then_some(us),
            reconnect_ms: s.reconnect_ms.load(Ordering::Relaxed),
        }
    }

    /// How many times an established bind was lost (for metrics).
    pub fn drops(&self) -> u64 {
        self.shared.drops.load(Ordering::Relaxed)
    }

    /// Why the last connect or bind failed, for readiness and logs; cleared on bind.
    pub fn last_error(&self) -> Option<String> {
        self.shared
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Send one `submit_sm` (its sequence number is assigned here) and wait for the
    /// SMSC's message id. Waits for room in the window. Dropping the returned future
    /// before the request was written withdraws it: it is never sent.
    pub async fn submit(&self, pdu: SubmitSm) -> Result<String, SubmitError> {
        match self.request(Pdu::from(pdu), Kind::Submit).await? {
            Answer::MessageId(id) => Ok(id),
            // A query_sm_resp to a submit: the SMSC mixed up sequence numbers.
            Answer::State(_) => Err(SubmitError::Rejected {
                status: status::ESME_RSYSERR,
            }),
        }
    }

    /// Send one `query_sm` and wait for the SMSC's answer. The SMSC refusing it
    /// (ESME_RQUERYFAIL: it does not know the message, or no longer) is
    /// [`SubmitError::Rejected`]. Withdrawn like a submit when the future is dropped.
    pub async fn query(&self, pdu: QuerySm) -> Result<QueryAnswer, SubmitError> {
        match self.request(Pdu::from(pdu), Kind::Query).await? {
            Answer::State(a) => Ok(a),
            Answer::MessageId(_) => Err(SubmitError::Rejected {
                status: status::ESME_RSYSERR,
            }),
        }
    }

    async fn request(&self, pdu: Pdu, kind: Kind) -> Result<Answer, SubmitError> {
        let (reply, rx) = oneshot::channel();
        self.requests
            .send(Request { pdu, kind, reply })
            .await
            .map_err(|_| SubmitError::Stopped)?;
        rx.await.unwrap_or(Err(SubmitError::Disconnected))
    }
}

fn set_error(shared: &Shared, e: Option<String>) {
    *shared.last_error.lock().unwrap_or_else(|p| p.into_inner()) = e;
}

/// Sequence numbers run 1..=0x7FFFFFFF and wrap.
struct Sequence(u32);

impl Sequence {
    fn next(&mut self) -> u32 {
        self.0 = if self.0 >= 0x7FFF_FFFF { 1 } else { self.0 + 1 };
        self.0
    }
}

fn jitter(d: Duration) -> Duration {
    // Spread reconnects of many binds: 50..100% of the step, without a RNG dependency.
    let nanos = Instant::now().elapsed().subsec_nanos() ^ std::process::id();
    d.mul_f64(0.5 + f64::from(nanos % 1000) / 2000.0)
}

async fn run(
    cfg: SessionConfig,
    mut requests: mpsc::Receiver<Request>,
    inbound: mpsc::Sender<Inbound>,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let mut seq = Sequence(0);
    let mut backoff = cfg.backoff_min;
    loop {
        if shutdown.is_cancelled() {
            break;
        }
        match connect_and_bind(&cfg, &mut seq).await {
            Ok((stream, buf)) => {
                backoff = cfg.backoff_min;
                set_error(&shared, None);
                shared.bound.store(true, Ordering::Relaxed);
                shared.since_ms.store(unix_ms(), Ordering::Relaxed);
                shared.reconnect_ms.store(0, Ordering::Relaxed);
                tracing::info!(addr = %cfg.addr, system_id = %cfg.system_id, "SMPP bound.");
                let end = serve(
                    &cfg,
                    stream,
                    buf,
                    &mut seq,
                    &mut requests,
                    &inbound,
                    &shared,
                    &shutdown,
                )
                .await;
                shared.bound.store(false, Ordering::Relaxed);
                shared.since_ms.store(unix_ms(), Ordering::Relaxed);
                shared.in_flight.store(0, Ordering::Relaxed);
                shared.pause_ms.store(0, Ordering::Relaxed);
                shared.throttled.store(false, Ordering::Relaxed);
                // The writer may have been aborted mid-stall; the next connection
                // starts with a clean slate.
                shared.write_stalled.store(false, Ordering::Relaxed);
                match end {
                    End::Shutdown => break,
                    End::Lost(why) => {
                        shared.drops.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(addr = %cfg.addr, reason = %why, "SMPP bind lost; reconnecting.");
                        set_error(&shared, Some(why));
                    }
                }
            }
            Err(why) => {
                // Logged once per backoff step, with the reason.
                tracing::warn!(addr = %cfg.addr, reason = %why, retry_in = ?backoff, "SMPP bind failed.");
                set_error(&shared, Some(why));
            }
        }
        let wait = jitter(backoff);
        shared
            .reconnect_ms
            .store(wait.as_millis().max(1) as u64, Ordering::Relaxed);
        backoff = (backoff * 2).min(cfg.backoff_max);
        // While unbound, requests fail fast so the caller can use another bind or retry.
        let deadline = tokio::time::sleep(wait);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => break,
                _ = shutdown.cancelled() => return,
                r = requests.recv() => match r {
                    Some(r) => { let _ = r.reply.send(Err(SubmitError::Disconnected)); }
                    None => return,
                },
            }
        }
    }
    // Fail whatever is still queued.
    requests.close();
    while let Ok(r) = requests.try_recv() {
        let _ = r.reply.send(Err(SubmitError::Stopped));
    }
}

fn cstr<const MIN: usize, const MAX: usize>(
    s: &str,
    what: &str,
) -> Result<COctetString<MIN, MAX>, String> {
    s.parse()
        .map_err(|e| format!("{what} `{s}` cannot be sent: {e:?}"))
}

/// Requested SO_SNDBUF of a bind's socket (the kernel doubles it for its own
/// bookkeeping). SMPP keeps little in flight, the window (100 submits of a few
/// hundred bytes) and the answers to receipts, so this costs no throughput; the
/// default, which Linux grows to megabytes, would hide an SMSC that stopped reading
/// until megabytes of our writes had piled up unread. With it a write stops
/// progressing after about a hundred kilobytes, and the write timeout starts counting.
const SEND_BUFFER: u32 = 64 * 1024;

/// Connect to the first address `addr` resolves to that accepts, with [`SEND_BUFFER`].
async fn dial(addr: &str) -> std::io::Result<TcpStream> {
    let mut last = None;
    for a in tokio::net::lookup_host(addr).await? {
        let sock = if a.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        // Best effort: where the platform refuses, its default stays.
        let _ = sock.set_send_buffer_size(SEND_BUFFER);
        match sock.connect(a).await {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "the address resolves to nothing",
        )
    }))
}

async fn connect_and_bind(
    cfg: &SessionConfig,
    seq: &mut Sequence,
) -> Result<(TcpStream, Vec<u8>), String> {
    let mut stream = tokio::time::timeout(cfg.connect_timeout, dial(&cfg.addr))
        .await
        .map_err(|_| format!("connect timed out after {:?}", cfg.connect_timeout))?
        .map_err(|e| format!("connect failed: {e}"))?;
    let _ = stream.set_nodelay(true);
    // The three bind PDUs have the same body; rusmpp gives each its own builder.
    macro_rules! bind {
        ($pdu:ident) => {
            Pdu::from(
                $pdu::builder()
                    .system_id(cstr(&cfg.system_id, "system_id")?)
                    .password(cstr(&cfg.password, "password")?)
                    .system_type(cstr(&cfg.system_type, "system_type")?)
                    .interface_version(InterfaceVersion::from(cfg.interface_version))
                    .addr_ton(Ton::Unknown)
                    .addr_npi(Npi::Unknown)
                    .address_range(cstr(&cfg.address_range, "address_range")?)
                    .build(),
            )
        };
    }
    let bind = match cfg.bind_type {
        BindType::Transceiver => bind!(BindTransceiver),
        BindType::Transmitter => bind!(BindTransmitter),
        BindType::Receiver => bind!(BindReceiver),
    };
    let bind_seq = seq.next();
    let bytes = frame::encode(&Command::new(CommandStatus::EsmeRok, bind_seq, bind));
    let resp_id = cfg.bind_type.command_id() | 0x8000_0000;
    let what = cfg.bind_type.as_str();
    tokio::time::timeout(cfg.write_timeout, stream.write_all(&bytes))
        .await
        .map_err(|_| format!("{what} not written within {:?}", cfg.write_timeout))?
        .map_err(|e| format!("write failed: {e}"))?;
    let mut buf = Vec::with_capacity(4096);
    let deadline = Instant::now() + cfg.response_timeout;
    loop {
        while let Some(f) = frame::split_frame(&mut buf, &cfg.limits).map_err(|e| e.to_string())? {
            let Some(h) = frame::header(&f) else { continue };
            if h.sequence_number == bind_seq && h.command_id == resp_id {
                return match h.command_status {
                    status::ESME_ROK => Ok((stream, buf)),
                    s => Err(format!("{what} refused: {} ({s:#x})", status::name(s))),
                };
            }
            if h.command_id == 0x8000_0000 && h.sequence_number == bind_seq {
                return Err(format!(
                    "bind refused with generic_nack {:#x}",
                    h.command_status
                ));
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("no {what}_resp within {:?}", cfg.response_timeout));
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(left, stream.read(&mut chunk))
            .await
            .map_err(|_| format!("no {what}_resp within {:?}", cfg.response_timeout))?
            .map_err(|e| format!("read failed: {e}"))?;
        if n == 0 {
            return Err("SMSC closed the connection during bind".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

enum End {
    Shutdown,
    Lost(String),
}

/// A submit kept to be sent again if the SMSC throttles it, and how often it was.
struct Resend {
    pdu: Pdu,
    tries: u32,
}

type Reply = oneshot::Sender<Result<Answer, SubmitError>>;
type Pending = HashMap<u32, (Reply, Instant, Kind, Option<Resend>)>;

/// How often the bind itself sends a throttled submit again before handing the
/// throttle back to the caller (which retries later through the queue).
const MAX_RESENDS: u32 = 3;

/// How many recent submit answers judge whether a bind at a window of one is
/// throttled persistently (an SMSC's rate limit: pause) or now and then (carry
/// on); it pauses when at least half of them were throttles.
const RECENT_ANSWERS: usize = 16;

/// Shortest and longest pause of a bind the SMSC throttled.
const THROTTLE_PAUSE: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

/// A write without progress for this long marks the bind stalled (no new submits,
/// reported down) until it progresses or the write timeout declares the link dead;
/// at most half the write timeout. On a live link a write completes at once: what
/// we have outstanding is bounded by the window and the receipts in progress, far
/// below the socket buffers, so a write waits only when the SMSC stopped reading.
pub const STALL_VISIBLE: Duration = Duration::from_secs(1);

/// Room in the write queue beyond one frame per window slot and per receipt in
/// progress: enquire_link and its answers, unbind, generic_nack.
const CONTROL_FRAMES: usize = 32;

/// Most bytes gathered from the write queue into one write.
const WRITE_BATCH: usize = 64 * 1024;

/// The write queue as the session loop sees it: it only ever `try_send`s, so the
/// loop never waits for the socket.
struct Outbox {
    tx: mpsc::Sender<Vec<u8>>,
    /// Frames that did not fit (see the module docs for why dropping is safe).
    dropped: u64,
}

impl Outbox {
    /// Queue a frame without waiting. `false` when it did not fit (the writer has
    /// been stuck for a whole queue) or the writer has ended (the session loop
    /// learns that from the writer's task).
    fn push(&mut self, frame: Vec<u8>, addr: &str) -> bool {
        match self.tx.try_send(frame) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                if self.dropped == 0 {
                    tracing::warn!(%addr, "SMPP write queue full: the SMSC is not reading. Answers to it are dropped until writes resume or the bind is declared dead.");
                }
                self.dropped += 1;
                false
            }
            Err(TrySendError::Closed(_)) => false,
        }
    }

    /// Room for one more frame. The session loop is the only sender, so room seen
    /// here is still there when it pushes.
    fn has_room(&self) -> bool {
        self.tx.capacity() > 0
    }
}

/// A written request's outcome with nobody waiting for it. For a submit the gateway
/// gave up on it and may send the message again, so the outcome is logged and
/// counted; a query nobody waits for any more changes nothing.
fn orphaned(
    shared: &Shared,
    addr: &str,
    seq: u32,
    kind: Kind,
    outcome: &Result<Answer, SubmitError>,
) {
    if kind == Kind::Query {
        tracing::debug!(%addr, sequence_number = seq, "A query_sm answered after its caller had gone.");
        return;
    }
    shared.orphaned.fetch_add(1, Ordering::Relaxed);
    match outcome {
        Ok(Answer::State(_)) => {}
        Ok(Answer::MessageId(id)) => {
            tracing::warn!(%addr, sequence_number = seq, provider_id = %id, "The SMSC accepted a submit_sm whose caller had given up: uncertain for the gateway, which may send the message again.")
        }
        Err(e @ (SubmitError::Timeout(_) | SubmitError::Disconnected | SubmitError::Stopped)) => {
            tracing::warn!(%addr, sequence_number = seq, outcome = %e, "A submit_sm whose caller had given up got no answer: uncertain whether the SMSC has it.")
        }
        Err(e) => {
            tracing::info!(%addr, sequence_number = seq, outcome = %e, "A submit_sm whose caller had given up was refused by the SMSC.")
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn serve(
    cfg: &SessionConfig,
    stream: TcpStream,
    mut buf: Vec<u8>,
    seq: &mut Sequence,
    requests: &mut mpsc::Receiver<Request>,
    inbound: &mpsc::Sender<Inbound>,
    shared: &Arc<Shared>,
    shutdown: &CancellationToken,
) -> End {
    let addr = cfg.addr.as_str();
    let window = cfg.window.max(1);
    let max_receipts = cfg.max_receipts.max(1);
    let (mut rd, wr) = stream.into_split();
    // One writer, so frames never interleave; its queue holds every frame the bounded
    // parts of the protocol can have outstanding (see the module docs).
    let (out_tx, out_rx) = mpsc::channel::<Vec<u8>>(window + max_receipts + CONTROL_FRAMES);
    let mut out = Outbox {
        tx: out_tx,
        dropped: 0,
    };
    let mut writer = tokio::spawn(write_frames(
        wr,
        out_rx,
        cfg.write_timeout,
        shared.clone(),
        cfg.addr.clone(),
    ));
    let mut writer_done = false;
    // Receipts with the consumer; each resolves to (command_id, sequence_number,
    // command_status) of its answer.
    let mut acks: JoinSet<(u32, u32, u32)> = JoinSet::new();
    let mut pending: Pending = HashMap::new();
    let mut last_rx = Instant::now();
    let mut enquire_sent: Option<(u32, Instant)> = None;
    let mut unbind_seq: Option<(u32, Instant)> = None;
    // Throttling: no new submits before `paused_until`; the step doubles per throttle.
    let mut paused_until: Option<Instant> = None;
    let mut pause_step = THROTTLE_PAUSE.0;
    // The congestion window (AIMD, see the module docs) and the throttled
    // submits waiting to be sent again.
    let mut cwnd = window as f64;
    shared.cwnd.store(window, Ordering::Relaxed);
    // Answers since the window was last cut: it is cut at most once per window
    // of answers (the others were for submits sent before the cut).
    let mut since_cut = usize::MAX;
    let mut recent: std::collections::VecDeque<bool> = Default::default();
    let mut resend: std::collections::VecDeque<(Reply, Resend)> = Default::default();
    let limit = |cwnd: f64| (cwnd as usize).clamp(1, window);
    let mut tick = tokio::time::interval(Duration::from_millis(100).min(cfg.response_timeout / 2));
    let mut chunk = vec![0u8; 16 * 1024];
    let end = 'outer: loop {
        let draining = unbind_seq.is_some() || shutdown.is_cancelled();
        let stalled = shared.write_stalled.load(Ordering::Relaxed);
        // Take a request when it can be written now, or, while writes are stalled,
        // to turn it away unsent so that its caller can use another bind.
        let room = paused_until.is_none() && pending.len() < limit(cwnd) && out.has_room();
        // Throttled submits go again before new requests.
        let resend_now = !draining && !stalled && room && !resend.is_empty();
        let take = !draining && (stalled || (room && resend.is_empty()));
        tokio::select! {
            // The socket read comes last: every other branch is bounded (a timer, the
            // window, the receipts in progress), so an SMSC flooding us cannot starve
            // them, and the read waits at most one pass over them.
            biased;
            r = &mut writer => {
                writer_done = true;
                break End::Lost(match r {
                    Ok(Ok(())) => "writer stopped".into(),
                    Ok(Err(why)) => why,
                    Err(e) => format!("writer failed: {e}"),
                });
            }
            _ = shutdown.cancelled(), if unbind_seq.is_none() && pending.is_empty() => {
                let s = seq.next();
                if !out.push(frame::encode(&Command::new(CommandStatus::EsmeRok, s, Pdu::Unbind)), addr) {
                    break End::Shutdown;
                }
                unbind_seq = Some((s, Instant::now()));
            }
            _ = tick.tick() => {
                let now = Instant::now();
                if paused_until.is_some_and(|p| p <= now) {
                    paused_until = None;
                    shared.pause_ms.store(0, Ordering::Relaxed);
                    shared.throttled.store(false, Ordering::Relaxed);
                }
                shared.in_flight.store(pending.len(), Ordering::Relaxed);
                shared.cwnd.store(limit(cwnd), Ordering::Relaxed);
                let expired: Vec<u32> = pending.iter().filter(|(_, (_, d, _, _))| *d <= now).map(|(s, _)| *s).collect();
                let unanswered = !expired.is_empty();
                for s in expired {
                    if let Some((reply, _, kind, _)) = pending.remove(&s) {
                        if let Err(outcome) = reply.send(Err(SubmitError::Timeout(cfg.response_timeout))) {
                            orphaned(shared, addr, s, kind, &outcome);
                        }
                    }
                }
                if let Some((_, sent)) = enquire_sent {
                    if now.duration_since(sent) > cfg.response_timeout {
                        break End::Lost(format!("no enquire_link_resp within {:?}: dead link", cfg.response_timeout));
                    }
                } else if unanswered || now.duration_since(last_rx) >= cfg.enquire_link {
                    // A request left unanswered also sends a probe: an SMSC that keeps
                    // sending to us but no longer answers (it stopped reading, or hung)
                    // is then found dead within two response timeouts, whatever the
                    // socket buffers still take, not only once it falls silent.
                    let s = seq.next();
                    // Not queued when the writer is stuck; the stall timer covers that case.
                    if out.push(frame::encode(&Command::new(CommandStatus::EsmeRok, s, Pdu::EnquireLink)), addr) {
                        enquire_sent = Some((s, now));
                    }
                }
                if let Some((_, sent)) = unbind_seq {
                    if now.duration_since(sent) > cfg.response_timeout {
                        break End::Shutdown;
                    }
                }
            }
            Some(done) = acks.join_next(), if !acks.is_empty() => {
                if let Ok((id, seq_no, st)) = done {
                    out.push(resp_inbound(id, seq_no, st), addr);
                }
            }
            _ = std::future::ready(()), if resend_now => {
                let Some((reply, again)) = resend.pop_front() else { continue };
                if reply.is_closed() {
                    shared.abandoned.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let s = seq.next();
                if !out.push(frame::encode(&Command::new(CommandStatus::EsmeRok, s, again.pdu.clone())), addr) {
                    let _ = reply.send(Err(SubmitError::Disconnected));
                    continue;
                }
                pending.insert(s, (reply, Instant::now() + cfg.response_timeout, Kind::Submit, Some(again)));
            }
            r = requests.recv(), if take => {
                let Some(Request { pdu, kind, reply }) = r else { break End::Shutdown };
                if reply.is_closed() {
                    // Its caller gave up while it waited for the window (the gateway's
                    // dispatch timeout) and retries it: sending it now would deliver it twice.
                    if kind == Kind::Submit {
                        shared.abandoned.fetch_add(1, Ordering::Relaxed);
                    }
                    tracing::debug!(%addr, ?kind, "Request withdrawn by its caller before it was sent; not sent.");
                    continue;
                }
                if stalled {
                    let _ = reply.send(Err(SubmitError::Disconnected));
                    continue;
                }
                let s = seq.next();
                let keep = (kind == Kind::Submit).then(|| Resend { pdu: pdu.clone(), tries: 0 });
                if !out.push(frame::encode(&Command::new(CommandStatus::EsmeRok, s, pdu)), addr) {
                    // Only when the writer has just ended: nothing was written.
                    let _ = reply.send(Err(SubmitError::Disconnected));
                    continue;
                }
                pending.insert(s, (reply, Instant::now() + cfg.response_timeout, kind, keep));
            }
            n = rd.read(&mut chunk) => {
                let n = match n {
                    Ok(0) => break End::Lost("SMSC closed the connection".into()),
                    Ok(n) => n,
                    Err(e) => break End::Lost(format!("read failed: {e}")),
                };
                buf.extend_from_slice(&chunk[..n]);
                last_rx = Instant::now();
                loop {
                    let f = match frame::split_frame(&mut buf, &cfg.limits) {
                        Ok(Some(f)) => f,
                        Ok(None) => break,
                        Err(e) => {
                            out.push(e.generic_nack(), addr);
                            break 'outer End::Lost(e.to_string());
                        }
                    };
                    let Some(h) = frame::header(&f) else { continue };
                    match h.command_id {
                        // submit_sm_resp / query_sm_resp / generic_nack: match by sequence number.
                        0x8000_0004 | 0x8000_0003 | 0x8000_0000 => {
                            let Some((reply, deadline, kind, keep)) = pending.remove(&h.sequence_number) else { continue };
                            if kind == Kind::Submit {
                                // Sent at deadline - response_timeout.
                                let took = (Instant::now() + cfg.response_timeout).saturating_duration_since(deadline);
                                let us = took.as_micros().min(u128::from(u32::MAX)) as u64;
                                let avg = shared.response_us.load(Ordering::Relaxed);
                                let avg = if avg == 0 { us.max(1) } else { (avg * 7 + us) / 8 };
                                shared.response_us.store(avg.max(1), Ordering::Relaxed);
                            }
                            let result = match h.command_status {
                                status::ESME_ROK => match frame::decode(&f).ok().and_then(|c| match c.pdu() {
                                    Some(Pdu::SubmitSmResp(r)) => Some(Answer::MessageId(r.message_id().as_str().to_string())),
                                    Some(Pdu::QuerySmResp(r)) => Some(Answer::State(QueryAnswer {
                                        message_state: u8::from(r.message_state),
                                        error_code: r.error_code,
                                        final_date: String::from_utf8_lossy(r.final_date.as_ref()).trim_end_matches('\0').to_string(),
                                    })),
                                    _ => None,
                                }) {
                                    Some(Answer::MessageId(id)) if id.is_empty() => Err(SubmitError::Rejected { status: status::ESME_RSYSERR }),
                                    Some(a) => Ok(a),
                                    None => Err(SubmitError::Rejected { status: status::ESME_RSYSERR }),
                                },
                                s @ (status::ESME_RTHROTTLED | status::ESME_RMSGQFUL) => Err(SubmitError::Throttled { status: s }),
                                s => Err(SubmitError::Rejected { status: s }),
                            };
                            if kind == Kind::Submit {
                                let throttled = matches!(result, Err(SubmitError::Throttled { .. }));
                                since_cut = since_cut.saturating_add(1);
                                if recent.len() == RECENT_ANSWERS {
                                    recent.pop_front();
                                }
                                recent.push_back(throttled);
                            }
                            match &result {
                                Err(SubmitError::Throttled { status: s }) => {
                                    shared.throttles.fetch_add(1, Ordering::Relaxed);
                                    if since_cut >= limit(cwnd) {
                                        since_cut = 0;
                                        if limit(cwnd) > 1 {
                                            cwnd = (cwnd / 2.0).max(1.0);
                                            tracing::debug!(%addr, status = %status::name(*s), window = limit(cwnd), "SMSC throttles; narrowing this bind's window.");
                                        } else if paused_until.is_none()
                                            && recent.iter().filter(|t| **t).count() * 2 >= recent.len()
                                        {
                                            // One at a time and still mostly throttled: a rate
                                            // limit. Pause, longer while it lasts.
                                            paused_until = Some(Instant::now() + pause_step);
                                            shared.pause_ms.store(pause_step.as_millis() as u64, Ordering::Relaxed);
                                            tracing::debug!(%addr, status = %status::name(*s), pause = ?pause_step, "SMSC throttles one at a time; pausing this bind.");
                                            pause_step = (pause_step * 2).min(THROTTLE_PAUSE.1);
                                        }
                                    }
                                    shared.throttled.store(paused_until.is_some() || limit(cwnd) * 2 <= window, Ordering::Relaxed);
                                }
                                Ok(_) => {
                                    pause_step = THROTTLE_PAUSE.0;
                                    cwnd = (cwnd + 1.0 / cwnd).min(window as f64);
                                    if paused_until.is_none() && limit(cwnd) * 2 > window {
                                        shared.throttled.store(false, Ordering::Relaxed);
                                    }
                                }
                                Err(_) => {}
                            }
                            // A throttled submit goes again from this bind, unless it has
                            // been throttled too often or its caller is gone.
                            if let (Err(SubmitError::Throttled { .. }), Some(k)) = (&result, keep) {
                                if k.tries < MAX_RESENDS && !reply.is_closed() {
                                    resend.push_back((reply, Resend { pdu: k.pdu, tries: k.tries + 1 }));
                                    continue;
                                }
                            }
                            if let Err(outcome) = reply.send(result) {
                                orphaned(shared, addr, h.sequence_number, kind, &outcome);
                            }
                        }
                        // enquire_link_resp
                        0x8000_0015 if enquire_sent.is_some_and(|(s, _)| s == h.sequence_number) => {
                            enquire_sent = None;
                        }
                        // enquire_link
                        0x0000_0015 => {
                            out.push(frame::encode(&Command::new(CommandStatus::EsmeRok, h.sequence_number, Pdu::EnquireLinkResp)), addr);
                        }
                        // unbind from the SMSC
                        0x0000_0006 => {
                            out.push(frame::encode(&Command::new(CommandStatus::EsmeRok, h.sequence_number, Pdu::UnbindResp)), addr);
                            break 'outer End::Lost("SMSC unbound".into());
                        }
                        // unbind_resp to ours
                        0x8000_0006 if unbind_seq.is_some_and(|(s, _)| s == h.sequence_number) => {
                            break 'outer End::Shutdown;
                        }
                        // deliver_sm / data_sm: hand over, answer when the consumer has stored it.
                        DELIVER_SM | DATA_SM => {
                            let (id, seq_no) = (h.command_id, h.sequence_number);
                            if acks.len() >= max_receipts {
                                // The consumer has its share: the SMSC keeps this one and
                                // delivers it again later, while we go on reading.
                                shared.receipts_deferred.fetch_add(1, Ordering::Relaxed);
                                out.push(resp_inbound(id, seq_no, status::ESME_RX_T_APPN), addr);
                                continue;
                            }
                            let pdu = match frame::decode(&f) {
                                Ok(cmd) => match cmd.pdu() {
                                    Some(Pdu::DeliverSm(d)) => InboundPdu::Deliver(d.clone()),
                                    Some(Pdu::DataSm(d)) => InboundPdu::Data(d.clone()),
                                    _ => {
                                        out.push(frame::generic_nack(seq_no, status::ESME_RSYSERR), addr);
                                        continue;
                                    }
                                },
                                Err(u) => {
                                    tracing::warn!(reason = %u.reason, "Undecodable deliver_sm/data_sm; answering with an error so the SMSC retries.");
                                    out.push(resp_inbound(id, seq_no, u.status), addr);
                                    continue;
                                }
                            };
                            let (ack, ack_rx) = oneshot::channel();
                            match inbound.try_send(Inbound { pdu, ack }) {
                                Ok(()) => {
                                    acks.spawn(async move {
                                        (id, seq_no, ack_rx.await.unwrap_or(status::ESME_RSYSERR))
                                    });
                                }
                                // The consumer's queue is sized for every bind's share, so
                                // this means it is shared more widely than planned: defer.
                                Err(TrySendError::Full(_)) => {
                                    shared.receipts_deferred.fetch_add(1, Ordering::Relaxed);
                                    out.push(resp_inbound(id, seq_no, status::ESME_RX_T_APPN), addr);
                                }
                                Err(TrySendError::Closed(_)) => {
                                    out.push(resp_inbound(id, seq_no, status::ESME_RSYSERR), addr);
                                }
                            }
                        }
                        id if id & 0x8000_0000 == 0 => {
                            // A request we do not serve: say so, keep the session.
                            out.push(frame::generic_nack(h.sequence_number, status::ESME_RINVCMDID), addr);
                        }
                        _ => {}
                    }
                }
            }
        }
    };
    for (s, (reply, _, kind, _)) in pending.drain() {
        if let Err(outcome) = reply.send(Err(SubmitError::Disconnected)) {
            orphaned(shared, addr, s, kind, &outcome);
        }
    }
    // Throttled submits not sent again: the SMSC does not have them.
    for (reply, _) in resend.drain(..) {
        let _ = reply.send(Err(SubmitError::Disconnected));
    }
    if matches!(end, End::Shutdown) && !acks.is_empty() {
        // Receipts being stored right now: answer those that finish within a second
        // rather than make the SMSC send them again.
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while let Some(done) = acks.join_next().await {
                if let Ok((id, seq_no, st)) = done {
                    out.push(resp_inbound(id, seq_no, st), addr);
                }
            }
        })
        .await;
    }
    // Unanswered receipts are re-sent by the SMSC after the reconnect.
    acks.abort_all();
    if out.dropped > 0 {
        tracing::warn!(%addr, dropped = out.dropped, "Answers to the SMSC were dropped while its link did not take writes.");
    }
    drop(out);
    // Let the writer flush what is queued (the unbind, answers), but not keep a lost
    // or stuck connection open.
    if !writer_done
        && tokio::time::timeout(Duration::from_secs(1), &mut writer)
            .await
            .is_err()
    {
        writer.abort();
    }
    end
}

/// Write queued frames until the queue closes. `Err` when the socket fails or a
/// write makes no progress for `write_timeout`; once one has made none for
/// [`STALL_VISIBLE`], `write_stalled` is set until it does.
async fn write_frames<W: AsyncWrite + Unpin>(
    mut wr: W,
    mut rx: mpsc::Receiver<Vec<u8>>,
    write_timeout: Duration,
    shared: Arc<Shared>,
    addr: String,
) -> Result<(), String> {
    let visible = STALL_VISIBLE.min(write_timeout / 2);
    let mut batch = Vec::with_capacity(4096);
    while let Some(first) = rx.recv().await {
        // Frames queued meanwhile go out in the same write: fewer syscalls under load.
        batch.clear();
        batch.extend_from_slice(&first);
        while batch.len() < WRITE_BATCH {
            match rx.try_recv() {
                Ok(f) => batch.extend_from_slice(&f),
                Err(_) => break,
            }
        }
        let mut written = 0;
        while written < batch.len() {
            let write = wr.write(&batch[written..]);
            tokio::pin!(write);
            // Each write call that moves bytes is progress; only a call that moves
            // none for the timeout counts, however slowly the SMSC reads.
            let n = match tokio::time::timeout(visible, &mut write).await {
                Ok(r) => r,
                Err(_) => {
                    shared.write_stalled.store(true, Ordering::Relaxed);
                    tracing::warn!(%addr, waited = ?visible, "SMPP writes make no progress: the SMSC is not reading. No submits go to this bind until they do.");
                    match tokio::time::timeout(write_timeout.saturating_sub(visible), &mut write)
                        .await
                    {
                        Ok(r) => {
                            shared.write_stalled.store(false, Ordering::Relaxed);
                            tracing::info!(%addr, "SMPP writes progress again.");
                            r
                        }
                        // The flag stays set until the session has marked itself unbound.
                        Err(_) => {
                            return Err(format!(
                                "no write progress for {write_timeout:?}: the SMSC stopped reading"
                            ))
                        }
                    }
                }
            };
            match n {
                Ok(0) => return Err("write failed: the connection is closed".into()),
                Ok(n) => written += n,
                Err(e) => return Err(format!("write failed: {e}")),
            }
        }
    }
    let _ = wr.shutdown().await;
    Ok(())
}

const DELIVER_SM: u32 = 0x0000_0005;
const DATA_SM: u32 = 0x0000_0103;

/// deliver_sm_resp or data_sm_resp (by the request's command_id) with `st`.
fn resp_inbound(command_id: u32, seq: u32, st: u32) -> Vec<u8> {
    let status = CommandStatus::from(st);
    if command_id == DATA_SM {
        frame::encode(&Command::new(status, seq, DataSmResp::builder().build()))
    } else {
        frame::encode(&Command::new(status, seq, DeliverSmResp::builder().build()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusmpp::pdus::{BindTransceiverResp, SubmitSmResp};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::net::TcpListener;

    fn submit(to: &str) -> SubmitSm {
        SubmitSm::builder()
            .source_addr("Goniec".parse().unwrap())
            .destination_addr(to.parse().unwrap())
            .short_message("hello".parse().unwrap())
            .build()
    }

    fn cfg(addr: std::net::SocketAddr) -> SessionConfig {
        SessionConfig {
            addr: addr.to_string(),
            password: "secret".into(),
            window: 4,
            response_timeout: Duration::from_millis(300),
            enquire_link: Duration::from_millis(200),
            backoff_min: Duration::from_millis(20),
            backoff_max: Duration::from_millis(50),
            ..Default::default()
        }
    }

    /// Behaviour of a scripted fake SMSC.
    #[derive(Clone, Copy)]
    struct Fake {
        /// Bind status to answer.
        bind_status: u32,
        /// Answer submits (false: stay silent, also to enquire_link).
        answer: bool,
        /// Delay before each submit_sm_resp.
        delay: Duration,
        /// Answer the first this many submits of a connection ESME_RTHROTTLED.
        throttle_first: usize,
    }

    /// Serve connections with `fake`; count binds and the most submits seen in flight.
    async fn fake_smsc(fake: Fake) -> (std::net::SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let binds = Arc::new(AtomicUsize::new(0));
        let max_in_flight = Arc::new(AtomicUsize::new(0));
        let (b, m) = (binds.clone(), max_in_flight.clone());
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let (b, m) = (b.clone(), m.clone());
                tokio::spawn(serve_fake(s, fake, b, m));
            }
        });
        (addr, binds, max_in_flight)
    }

    async fn serve_fake(s: TcpStream, fake: Fake, binds: Arc<AtomicUsize>, max: Arc<AtomicUsize>) {
        let (mut rd, wr) = s.into_split();
        let wr = Arc::new(tokio::sync::Mutex::new(wr));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let mut bound = false;
        let mut submits = 0usize;
        loop {
            let Ok(n) = rd.read(&mut chunk).await else {
                return;
            };
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
            while let Ok(Some(f)) = frame::split_frame(&mut buf, &FrameLimits::default()) {
                let h = frame::header(&f).unwrap();
                let reply = match h.command_id {
                    0x0000_0009 => {
                        binds.fetch_add(1, Ordering::SeqCst);
                        bound = fake.bind_status == 0;
                        let resp = BindTransceiverResp::builder()
                            .system_id("fake".parse().unwrap())
                            .build();
                        Some(frame::encode(&Command::new(
                            CommandStatus::from(fake.bind_status),
                            h.sequence_number,
                            resp,
                        )))
                    }
                    0x0000_0004 if bound && fake.answer && submits < fake.throttle_first => {
                        submits += 1;
                        Some(frame::header_only(
                            0x8000_0004,
                            status::ESME_RTHROTTLED,
                            h.sequence_number,
                        ))
                    }
                    0x0000_0004 if bound && fake.answer => {
                        submits += 1;
                        let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                        max.fetch_max(now, Ordering::SeqCst);
                        let (wr, in_flight, seq) =
                            (wr.clone(), in_flight.clone(), h.sequence_number);
                        tokio::spawn(async move {
                            tokio::time::sleep(fake.delay).await;
                            in_flight.fetch_sub(1, Ordering::SeqCst);
                            let resp = SubmitSmResp::builder()
                                .message_id(format!("ID{seq}").parse().unwrap())
                                .build();
                            let _ = wr
                                .lock()
                                .await
                                .write_all(&frame::encode(&Command::new(
                                    CommandStatus::EsmeRok,
                                    seq,
                                    resp,
                                )))
                                .await;
                        });
                        None
                    }
                    0x0000_0015 if fake.answer => Some(frame::encode(&Command::new(
                        CommandStatus::EsmeRok,
                        h.sequence_number,
                        Pdu::EnquireLinkResp,
                    ))),
                    0x0000_0006 => Some(frame::encode(&Command::new(
                        CommandStatus::EsmeRok,
                        h.sequence_number,
                        Pdu::UnbindResp,
                    ))),
                    _ => None,
                };
                if let Some(r) = reply {
                    if wr.lock().await.write_all(&r).await.is_err() {
                        return;
                    }
                }
            }
        }
    }

    async fn wait_bound(s: &Session) {
        for _ in 0..200 {
            if s.is_bound() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("never bound: {:?}", s.last_error());
    }

    #[tokio::test]
    async fn submits_within_the_window_and_matches_responses() {
        let fake = Fake {
            bind_status: 0,
            answer: true,
            delay: Duration::from_millis(30),
            throttle_first: 0,
        };
        let (addr, _, max) = fake_smsc(fake).await;
        let (inbound, _rx) = mpsc::channel(8);
        let stop = CancellationToken::new();
        let (s, task) = Session::spawn(cfg(addr), inbound, stop.clone());
        wait_bound(&s).await;
        let results = futures_join(&s, 20).await;
        assert!(
            results
                .iter()
                .all(|r| r.as_ref().is_ok_and(|id| id.starts_with("ID"))),
            "{results:?}"
        );
        let ids: std::collections::HashSet<_> =
            results.iter().map(|r| r.clone().unwrap()).collect();
        assert_eq!(ids.len(), 20, "every submit got its own response");
        assert!(
            max.load(Ordering::SeqCst) <= 4,
            "window of 4 exceeded: {}",
            max.load(Ordering::SeqCst)
        );
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(2), task)
            .await
            .unwrap()
            .unwrap();
    }

    async fn futures_join(s: &Session, n: usize) -> Vec<Result<String, SubmitError>> {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let s = s.clone();
                tokio::spawn(async move { s.submit(submit(&format!("4850000{i:04}"))).await })
            })
            .collect();
        let mut out = Vec::new();
        for h in handles {
            out.push(h.await.unwrap());
        }
        out
    }

    #[tokio::test]
    async fn bind_failure_is_reported_and_retried() {
        let fake = Fake {
            bind_status: status::ESME_RINVPASWD,
            answer: true,
            delay: Duration::ZERO,
            throttle_first: 0,
        };
        let (addr, binds, _) = fake_smsc(fake).await;
        let (inbound, _rx) = mpsc::channel(8);
        let stop = CancellationToken::new();
        let (s, _task) = Session::spawn(cfg(addr), inbound, stop.clone());
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!s.is_bound());
        assert!(
            s.last_error().unwrap().contains("ESME_RINVPASWD"),
            "{:?}",
            s.last_error()
        );
        assert!(binds.load(Ordering::SeqCst) >= 2, "retried with backoff");
        assert_eq!(
            s.submit(submit("48500000001")).await,
            Err(SubmitError::Disconnected)
        );
        stop.cancel();
    }

    #[tokio::test]
    async fn a_silent_link_times_out_and_is_torn_down() {
        let fake = Fake {
            bind_status: 0,
            answer: false,
            delay: Duration::ZERO,
            throttle_first: 0,
        };
        let (addr, binds, _) = fake_smsc(fake).await;
        let (inbound, _rx) = mpsc::channel(8);
        let stop = CancellationToken::new();
        let (s, _task) = Session::spawn(cfg(addr), inbound, stop.clone());
        wait_bound(&s).await;
        assert_eq!(
            s.submit(submit("48500000001")).await,
            Err(SubmitError::Timeout(Duration::from_millis(300)))
        );
        // No enquire_link_resp: the link is declared dead and rebound.
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert!(
            binds.load(Ordering::SeqCst) >= 2,
            "reconnected after the dead link"
        );
        assert!(s.drops() >= 1, "the dead link was torn down");
        stop.cancel();
    }

    #[tokio::test]
    async fn a_throttled_submit_is_sent_again_by_the_bind() {
        let fake = Fake {
            bind_status: 0,
            answer: true,
            delay: Duration::ZERO,
            throttle_first: 2,
        };
        let (addr, _, _) = fake_smsc(fake).await;
        let (inbound, _rx) = mpsc::channel(8);
        let stop = CancellationToken::new();
        let (s, _task) = Session::spawn(cfg(addr), inbound, stop.clone());
        wait_bound(&s).await;
        // Throttled twice, sent again each time by the bind: the caller sees the
        // SMSC's acceptance, not the throttles, and no pause was needed.
        let started = Instant::now();
        let id = s.submit(submit("48500000001")).await.unwrap();
        assert!(id.starts_with("ID"), "{id}");
        assert!(
            started.elapsed() < THROTTLE_PAUSE.0,
            "no pause: {:?}",
            started.elapsed()
        );
        stop.cancel();
    }

    #[tokio::test]
    async fn a_bind_throttled_at_a_window_of_one_pauses_then_gives_the_submit_back() {
        let fake = Fake {
            bind_status: 0,
            answer: true,
            delay: Duration::ZERO,
            throttle_first: 1_000,
        };
        let (addr, _, _) = fake_smsc(fake).await;
        let (inbound, _rx) = mpsc::channel(8);
        let stop = CancellationToken::new();
        let mut c = cfg(addr);
        c.window = 2;
        let (s, _task) = Session::spawn(c, inbound, stop.clone());
        wait_bound(&s).await;
        let started = Instant::now();
        // 1 + MAX_RESENDS throttles: the window narrows to one, then the bind
        // pauses, and the submit goes back to its caller to retry later.
        assert_eq!(
            s.submit(submit("48500000001")).await,
            Err(SubmitError::Throttled {
                status: status::ESME_RTHROTTLED
            })
        );
        assert!(s.is_throttled(), "the bind reports its pause");
        assert!(
            started.elapsed() >= THROTTLE_PAUSE.0,
            "the resends waited out a pause: {:?}",
            started.elapsed()
        );
        stop.cancel();
    }

    /// A writer and its peer, joined by a 64-byte pipe the test reads (or not).
    struct Stuck {
        shared: Arc<Shared>,
        frames: mpsc::Sender<Vec<u8>>,
        theirs: tokio::io::DuplexStream,
        writer: tokio::task::JoinHandle<Result<(), String>>,
    }

    fn stuck_writer(write_timeout: Duration) -> Stuck {
        let (ours, theirs) = tokio::io::duplex(64);
        let shared = Arc::new(Shared::default());
        let (frames, rx) = mpsc::channel(8);
        let writer = tokio::spawn(write_frames(
            ours,
            rx,
            write_timeout,
            shared.clone(),
            "test".into(),
        ));
        Stuck {
            shared,
            frames,
            theirs,
            writer,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_without_progress_shows_as_stalled_then_ends_the_writer() {
        let Stuck {
            shared,
            frames: tx,
            mut theirs,
            writer: w,
        } = stuck_writer(Duration::from_secs(4));
        tx.send(vec![7u8; 200]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(900)).await;
        assert!(!shared.write_stalled.load(Ordering::Relaxed), "too early");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            shared.write_stalled.load(Ordering::Relaxed),
            "after STALL_VISIBLE"
        );
        // The peer reads a little: that is progress, the stall clears and its clock
        // starts again.
        let mut got = [0u8; 64];
        theirs.read_exact(&mut got).await.unwrap();
        tokio::task::yield_now().await;
        assert!(
            !shared.write_stalled.load(Ordering::Relaxed),
            "progress clears it"
        );
        let t0 = tokio::time::Instant::now();
        let end = w.await.unwrap();
        assert_eq!(
            end,
            Err("no write progress for 4s: the SMSC stopped reading".into())
        );
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_millis(3900) && took <= Duration::from_millis(4100),
            "declared dead {took:?} after the last progress"
        );
        drop(theirs);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_reader_is_not_a_stalled_one() {
        // 400 bytes read 16 at a time every half second take 12 s, three times the
        // write timeout; every read is progress, so the writer never gives up.
        let Stuck {
            shared,
            frames: tx,
            mut theirs,
            writer: w,
        } = stuck_writer(Duration::from_secs(4));
        tx.send(vec![1u8; 400]).await.unwrap();
        let mut got = 0;
        let mut b = [0u8; 16];
        while got < 400 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            assert!(!shared.write_stalled.load(Ordering::Relaxed));
            got += theirs.read(&mut b).await.unwrap();
        }
        drop(tx);
        assert_eq!(w.await.unwrap(), Ok(()));
    }

    #[test]
    fn sequence_numbers_wrap_below_2_pow_31() {
        let mut s = Sequence(0x7FFF_FFFE);
        assert_eq!(s.next(), 0x7FFF_FFFF);
        assert_eq!(s.next(), 1);
    }
}
