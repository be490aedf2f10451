//! One SMPP bind, kept alive: connect, bind (transceiver, transmitter or receiver),
//! a window of outstanding requests matched by sequence number with response
//! timeouts, `enquire_link` keepalive (a link that stops answering is torn down),
//! reconnect with exponential backoff and jitter, and a clean `unbind` on shutdown
//! once the window drained.
//!
//! ESME_RTHROTTLED / ESME_RMSGQFUL pause this bind: no new submit goes out until the
//! pause ends (100 ms, doubling while the SMSC keeps throttling, at most 5 s, reset
//! by the next accepted submit).
//!
//! Inbound `deliver_sm` and `data_sm` (receipts) are handed to the consumer with an
//! acknowledgement channel; the response goes back only when the consumer says the
//! receipt is stored, so a crash in between makes the SMSC send it again instead of
//! losing it.
//!
//! Requests in flight when a bind drops fail with [`SubmitError::Disconnected`]; the
//! caller retries them (the gateway's queue does), so nothing is lost.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusmpp::pdus::{
    BindReceiver, BindTransceiver, BindTransmitter, DataSm, DataSmResp, DeliverSm, DeliverSmResp,
    SubmitSm,
};
use rusmpp::types::COctetString;
use rusmpp::values::{InterfaceVersion, Npi, Ton};
use rusmpp::{Command, CommandStatus, Pdu};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
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
            connect_timeout: Duration::from_secs(5),
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            limits: FrameLimits::default(),
        }
    }
}

/// Why a submit did not get a message id.
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

struct Request {
    pdu: SubmitSm,
    reply: oneshot::Sender<Result<String, SubmitError>>,
}

/// State shared with the handle.
#[derive(Default)]
struct Shared {
    bound: AtomicBool,
    /// The SMSC asked this bind to slow down and the pause has not ended.
    throttled: AtomicBool,
    last_error: Mutex<Option<String>>,
    /// Binds lost after being established (dead links, SMSC unbinds, resets).
    drops: std::sync::atomic::AtomicU64,
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
        let task = tokio::spawn(run(cfg, rx, inbound, shared.clone(), shutdown));
        (
            Session {
                requests: tx,
                shared,
            },
            task,
        )
    }

    /// True while bound and able to submit.
    pub fn is_bound(&self) -> bool {
        self.shared.bound.load(Ordering::Relaxed)
    }

    /// True while the SMSC's last throttle response pauses this bind.
    pub fn is_throttled(&self) -> bool {
        self.shared.throttled.load(Ordering::Relaxed)
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
    /// SMSC's message id. Waits for room in the window.
    pub async fn submit(&self, pdu: SubmitSm) -> Result<String, SubmitError> {
        let (reply, rx) = oneshot::channel();
        self.requests
            .send(Request { pdu, reply })
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
                shared.throttled.store(false, Ordering::Relaxed);
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

async fn connect_and_bind(
    cfg: &SessionConfig,
    seq: &mut Sequence,
) -> Result<(TcpStream, Vec<u8>), String> {
    let mut stream = tokio::time::timeout(cfg.connect_timeout, TcpStream::connect(&cfg.addr))
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
    stream
        .write_all(&bytes)
        .await
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

type Pending = HashMap<u32, (oneshot::Sender<Result<String, SubmitError>>, Instant)>;

/// Shortest and longest pause of a bind the SMSC throttled.
const THROTTLE_PAUSE: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

#[allow(clippy::too_many_arguments)]
async fn serve(
    cfg: &SessionConfig,
    stream: TcpStream,
    mut buf: Vec<u8>,
    seq: &mut Sequence,
    requests: &mut mpsc::Receiver<Request>,
    inbound: &mpsc::Sender<Inbound>,
    shared: &Shared,
    shutdown: &CancellationToken,
) -> End {
    let (mut rd, mut wr) = stream.into_split();
    // One writer, so frames from the loop and from receipt acks never interleave.
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(cfg.window.max(1) * 2 + 16);
    let writer = tokio::spawn(async move {
        while let Some(b) = out_rx.recv().await {
            if wr.write_all(&b).await.is_err() {
                return;
            }
        }
        let _ = wr.shutdown().await;
    });
    let mut pending: Pending = HashMap::new();
    let mut last_rx = Instant::now();
    let mut enquire_sent: Option<(u32, Instant)> = None;
    let mut unbind_seq: Option<(u32, Instant)> = None;
    // Throttling: no new submits before `paused_until`; the step doubles per throttle.
    let mut paused_until: Option<Instant> = None;
    let mut pause_step = THROTTLE_PAUSE.0;
    let mut tick = tokio::time::interval(Duration::from_millis(100).min(cfg.response_timeout / 2));
    let mut chunk = vec![0u8; 16 * 1024];
    let fail_all = |pending: &mut Pending, e: SubmitError| {
        for (_, (reply, _)) in pending.drain() {
            let _ = reply.send(Err(e.clone()));
        }
    };
    let end = 'outer: loop {
        let draining = unbind_seq.is_some() || shutdown.is_cancelled();
        tokio::select! {
            biased;
            _ = shutdown.cancelled(), if unbind_seq.is_none() && pending.is_empty() => {
                let s = seq.next();
                let _ = out_tx.send(frame::encode(&Command::new(CommandStatus::EsmeRok, s, Pdu::Unbind))).await;
                unbind_seq = Some((s, Instant::now()));
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
                            let _ = out_tx.send(e.generic_nack()).await;
                            break 'outer End::Lost(e.to_string());
                        }
                    };
                    let Some(h) = frame::header(&f) else { continue };
                    match h.command_id {
                        // submit_sm_resp / generic_nack: match by sequence number.
                        0x8000_0004 | 0x8000_0000 => {
                            let Some((reply, _)) = pending.remove(&h.sequence_number) else { continue };
                            let result = match h.command_status {
                                status::ESME_ROK => match frame::decode(&f).ok().and_then(|c| match c.pdu() {
                                    Some(Pdu::SubmitSmResp(r)) => Some(r.message_id().as_str().to_string()),
                                    _ => None,
                                }) {
                                    Some(id) if !id.is_empty() => Ok(id),
                                    _ => Err(SubmitError::Rejected { status: status::ESME_RSYSERR }),
                                },
                                s @ (status::ESME_RTHROTTLED | status::ESME_RMSGQFUL) => Err(SubmitError::Throttled { status: s }),
                                s => Err(SubmitError::Rejected { status: s }),
                            };
                            match result {
                                // One pause per throttle burst: the window's other answers
                                // (sent before the pause) must not escalate it again.
                                Err(SubmitError::Throttled { status: s }) if paused_until.is_none() => {
                                    paused_until = Some(Instant::now() + pause_step);
                                    tracing::debug!(addr = %cfg.addr, status = %status::name(s), pause = ?pause_step, "SMSC throttles; pausing this bind.");
                                    pause_step = (pause_step * 2).min(THROTTLE_PAUSE.1);
                                    shared.throttled.store(true, Ordering::Relaxed);
                                }
                                Ok(_) => pause_step = THROTTLE_PAUSE.0,
                                Err(_) => {}
                            }
                            let _ = reply.send(result);
                        }
                        // enquire_link_resp
                        0x8000_0015 if enquire_sent.is_some_and(|(s, _)| s == h.sequence_number) => {
                            enquire_sent = None;
                        }
                        // enquire_link
                        0x0000_0015 => {
                            let _ = out_tx.send(frame::encode(&Command::new(CommandStatus::EsmeRok, h.sequence_number, Pdu::EnquireLinkResp))).await;
                        }
                        // unbind from the SMSC
                        0x0000_0006 => {
                            let _ = out_tx.send(frame::encode(&Command::new(CommandStatus::EsmeRok, h.sequence_number, Pdu::UnbindResp))).await;
                            break 'outer End::Lost("SMSC unbound".into());
                        }
                        // unbind_resp to ours
                        0x8000_0006 if unbind_seq.is_some_and(|(s, _)| s == h.sequence_number) => {
                            break 'outer End::Shutdown;
                        }
                        // deliver_sm / data_sm: hand over, answer when the consumer has stored it.
                        DELIVER_SM | DATA_SM => match frame::decode(&f) {
                            Ok(cmd) => {
                                let pdu = match cmd.pdu() {
                                    Some(Pdu::DeliverSm(d)) => InboundPdu::Deliver(d.clone()),
                                    Some(Pdu::DataSm(d)) => InboundPdu::Data(d.clone()),
                                    _ => {
                                        let _ = out_tx.send(frame::generic_nack(h.sequence_number, status::ESME_RSYSERR)).await;
                                        continue;
                                    }
                                };
                                let (ack, ack_rx) = oneshot::channel();
                                let (id, seq_no) = (h.command_id, h.sequence_number);
                                let out = out_tx.clone();
                                if inbound.send(Inbound { pdu, ack }).await.is_err() {
                                    let _ = out.send(resp_inbound(id, seq_no, status::ESME_RSYSERR)).await;
                                    continue;
                                }
                                tokio::spawn(async move {
                                    let st = ack_rx.await.unwrap_or(status::ESME_RSYSERR);
                                    let _ = out.send(resp_inbound(id, seq_no, st)).await;
                                });
                            }
                            Err(u) => {
                                tracing::warn!(reason = %u.reason, "Undecodable deliver_sm/data_sm; answering with an error so the SMSC retries.");
                                let _ = out_tx.send(resp_inbound(h.command_id, h.sequence_number, u.status)).await;
                            }
                        },
                        id if id & 0x8000_0000 == 0 => {
                            // A request we do not serve: say so, keep the session.
                            let _ = out_tx.send(frame::generic_nack(h.sequence_number, 0x03)).await;
                        }
                        _ => {}
                    }
                }
            }
            r = requests.recv(), if !draining && paused_until.is_none() && pending.len() < cfg.window => {
                let Some(Request { pdu, reply }) = r else { break End::Shutdown };
                let s = seq.next();
                let bytes = frame::encode(&Command::new(CommandStatus::EsmeRok, s, pdu));
                if out_tx.send(bytes).await.is_err() {
                    let _ = reply.send(Err(SubmitError::Disconnected));
                    break End::Lost("writer stopped".into());
                }
                pending.insert(s, (reply, Instant::now() + cfg.response_timeout));
            }
            _ = tick.tick() => {
                let now = Instant::now();
                if paused_until.is_some_and(|p| p <= now) {
                    paused_until = None;
                    shared.throttled.store(false, Ordering::Relaxed);
                }
                let expired: Vec<u32> = pending.iter().filter(|(_, (_, d))| *d <= now).map(|(s, _)| *s).collect();
                for s in expired {
                    if let Some((reply, _)) = pending.remove(&s) {
                        let _ = reply.send(Err(SubmitError::Timeout(cfg.response_timeout)));
                    }
                }
                if let Some((_, sent)) = enquire_sent {
                    if now.duration_since(sent) > cfg.response_timeout {
                        break End::Lost(format!("no enquire_link_resp within {:?}: dead link", cfg.response_timeout));
                    }
                } else if now.duration_since(last_rx) >= cfg.enquire_link {
                    let s = seq.next();
                    let _ = out_tx.send(frame::encode(&Command::new(CommandStatus::EsmeRok, s, Pdu::EnquireLink))).await;
                    enquire_sent = Some((s, now));
                }
                if let Some((_, sent)) = unbind_seq {
                    if now.duration_since(sent) > cfg.response_timeout {
                        break End::Shutdown;
                    }
                }
                if writer.is_finished() {
                    break End::Lost("write failed".into());
                }
            }
        }
    };
    fail_all(&mut pending, SubmitError::Disconnected);
    drop(out_tx);
    // Receipt acknowledgements still in progress hold senders of the writer; do not
    // let them keep a lost connection open (the SMSC would go on sending into it).
    let mut writer = writer;
    if tokio::time::timeout(Duration::from_secs(1), &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
    end
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
    async fn a_throttle_pauses_the_bind_before_the_next_submit() {
        let fake = Fake {
            bind_status: 0,
            answer: true,
            delay: Duration::ZERO,
            throttle_first: 1,
        };
        let (addr, _, _) = fake_smsc(fake).await;
        let (inbound, _rx) = mpsc::channel(8);
        let stop = CancellationToken::new();
        let (s, _task) = Session::spawn(cfg(addr), inbound, stop.clone());
        wait_bound(&s).await;
        let throttled_at = Instant::now();
        assert_eq!(
            s.submit(submit("48500000001")).await,
            Err(SubmitError::Throttled {
                status: status::ESME_RTHROTTLED
            })
        );
        assert!(s.is_throttled(), "the bind reports its pause");
        // The next submit is held for the pause (at least 100 ms), then goes out.
        let id = s.submit(submit("48500000002")).await.unwrap();
        assert!(id.starts_with("ID"), "{id}");
        assert!(
            throttled_at.elapsed() >= THROTTLE_PAUSE.0,
            "submitted {:?} after the throttle",
            throttled_at.elapsed()
        );
        stop.cancel();
    }

    #[test]
    fn sequence_numbers_wrap_below_2_pow_31() {
        let mut s = Sequence(0x7FFF_FFFE);
        assert_eq!(s.next(), 0x7FFF_FFFF);
        assert_eq!(s.next(), 1);
    }
}
