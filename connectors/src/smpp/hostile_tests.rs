//! A bind against SMSCs that misbehave on purpose, over real loopback TCP: one that
//! stops reading our writes, one that floods receipts for ids nobody knows, and a
//! slow one that keeps the window full while callers give up. Each SMSC here is a
//! few lines of real SMPP (not the simulator), scripted for exactly one fault.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::config::Config as SmppConfig;
use rusmpp::pdus::{BindTransceiverResp, DeliverSm, SubmitSm, SubmitSmResp};
use rusmpp::values::EsmClass;
use rusmpp::{Command, CommandStatus, Pdu};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::connector::SmppConnector;
use super::frame::{self, FrameLimits};
use super::session::{Session, SessionConfig};
use crate::{BuildContext, Channel, Connector, DeliveryError, Health, Outbound, Receipt};

const BIND_TRANSCEIVER: u32 = 0x0000_0009;
const SUBMIT_SM: u32 = 0x0000_0004;
const DELIVER_SM_RESP: u32 = 0x8000_0005;
const ENQUIRE_LINK: u32 = 0x0000_0015;
const UNBIND: u32 = 0x0000_0006;

/// Reads whole frames from one side of a connection.
struct Frames {
    rd: OwnedReadHalf,
    buf: Vec<u8>,
}

impl Frames {
    /// The next frame and its header; `None` once the peer is gone.
    async fn next(&mut self) -> Option<(frame::Header, Vec<u8>)> {
        loop {
            if let Ok(Some(f)) = frame::split_frame(&mut self.buf, &FrameLimits::default()) {
                let h = frame::header(&f)?;
                return Some((h, f));
            }
            let mut chunk = [0u8; 4096];
            match self.rd.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

/// Split a connection: frames in, and a queue of frames out drained by its own task
/// (so the scripted SMSC never holds a lock across a write).
fn split(s: TcpStream) -> (Frames, mpsc::UnboundedSender<Vec<u8>>) {
    let (rd, mut wr) = s.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    tokio::spawn(async move {
        while let Some(f) = rx.recv().await {
            if wr.write_all(&f).await.is_err() {
                return;
            }
        }
    });
    (
        Frames {
            rd,
            buf: Vec::new(),
        },
        tx,
    )
}

fn pdu(seq: u32, p: impl Into<Pdu>) -> Vec<u8> {
    frame::encode(&Command::new(CommandStatus::EsmeRok, seq, p))
}

fn bind_resp(seq: u32) -> Vec<u8> {
    pdu(
        seq,
        BindTransceiverResp::builder()
            .system_id("hostile".parse().unwrap())
            .build(),
    )
}

fn submit_resp(seq: u32, id: &str) -> Vec<u8> {
    pdu(
        seq,
        SubmitSmResp::builder()
            .message_id(id.parse().unwrap())
            .build(),
    )
}

/// A delivery receipt (text format, esm_class 0x04) for provider id `id`.
fn receipt(seq: u32, id: &str) -> Vec<u8> {
    let text = format!(
        "id:{id} sub:001 dlvrd:001 submit date:2501011200 done date:2501011201 stat:DELIVRD err:000 text:"
    );
    pdu(
        seq,
        DeliverSm::builder()
            .source_addr("48500100200".parse().unwrap())
            .destination_addr("Goniec".parse().unwrap())
            .esm_class(EsmClass::from(0x04))
            .short_message(text.as_str().parse().unwrap())
            .build(),
    )
}

/// Answer the requests a well-behaved SMSC answers: submit_sm (after `delay`, with
/// id `S<n>`), enquire_link and unbind. Counts submit_sm in `submits`.
async fn behave(
    mut rd: Frames,
    tx: mpsc::UnboundedSender<Vec<u8>>,
    submits: Arc<AtomicUsize>,
    delay: Duration,
) {
    while let Some((h, _)) = rd.next().await {
        match h.command_id {
            SUBMIT_SM => {
                let n = submits.fetch_add(1, Ordering::SeqCst) + 1;
                let tx = tx.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = tx.send(submit_resp(h.sequence_number, &format!("S{n}")));
                });
            }
            ENQUIRE_LINK => {
                let _ = tx.send(pdu(h.sequence_number, Pdu::EnquireLinkResp));
            }
            UNBIND => {
                let _ = tx.send(pdu(h.sequence_number, Pdu::UnbindResp));
            }
            _ => {}
        }
    }
}

/// Wait for the bind request; `None` if the peer left first.
async fn read_bind(rd: &mut Frames) -> Option<u32> {
    while let Some((h, _)) = rd.next().await {
        if h.command_id == BIND_TRANSCEIVER {
            return Some(h.sequence_number);
        }
    }
    None
}

fn connector(addr: SocketAddr, tweak: impl FnOnce(&mut SmppConfig)) -> SmppConnector {
    let mut cfg = SmppConfig {
        host: addr.ip().to_string(),
        port: addr.port(),
        password: "secret".into(),
        binds: 1,
        window: 4,
        response_timeout: Duration::from_secs(1),
        ..SmppConfig::default()
    };
    tweak(&mut cfg);
    connector_with(cfg, mpsc::channel(1000).0)
}

fn connector_with(cfg: SmppConfig, receipts: mpsc::Sender<Receipt>) -> SmppConnector {
    let cx = BuildContext {
        receipts,
        inbound: mpsc::channel(16).0,
        shutdown: CancellationToken::new(),
    };
    SmppConnector::new("hostile", &cfg, cx).unwrap()
}

fn sms(to: &str) -> Outbound {
    Outbound {
        message_id: ulid::Ulid::new().to_string(),
        channel: Channel::Sms,
        to: to.into(),
        from: None,
        text: Some("Dzień dobry".into()),
        email: None,
        rcs: None,
        attempt: 0,
        valid_until: None,
    }
}

/// Poll `f` every 10 ms until it holds; panics after `within`.
async fn wait_for(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < within, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------------------
// (a) An SMSC that stops reading.

/// Binds, then never reads that connection again while flooding it with
/// enquire_link, so our answers fill the socket buffers and our writes stop
/// progressing. Its listening socket has a small receive buffer so that happens
/// within a fraction of a second. Later connections wait until `release` turns
/// true before answering the bind, then behave. Returns the address and the binds seen.
async fn deaf_smsc(release: watch::Receiver<bool>) -> (SocketAddr, Arc<AtomicUsize>) {
    let sock = TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let l = sock.listen(16).unwrap();
    let addr = l.local_addr().unwrap();
    let binds = Arc::new(AtomicUsize::new(0));
    let b = binds.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let (b, mut release) = (b.clone(), release.clone());
            tokio::spawn(async move {
                let (mut rd, tx) = split(s);
                let Some(seq) = read_bind(&mut rd).await else {
                    return;
                };
                if b.fetch_add(1, Ordering::SeqCst) == 0 {
                    let _ = tx.send(bind_resp(seq));
                    // Never read again (`rd` stays open, unread), only write.
                    let mut seq = 1u32;
                    loop {
                        let mut burst = Vec::new();
                        for _ in 0..64 {
                            burst.extend(pdu(seq, Pdu::EnquireLink));
                            seq += 1;
                        }
                        if tx.send(burst).is_err() {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(2)).await;
                        if tx.is_closed() {
                            break;
                        }
                    }
                    drop(rd);
                } else {
                    let _ = release.wait_for(|go| *go).await;
                    let _ = tx.send(bind_resp(seq));
                    behave(rd, tx, Arc::new(AtomicUsize::new(0)), Duration::ZERO).await;
                }
            });
        }
    });
    (addr, binds)
}

#[tokio::test]
async fn an_smsc_that_stops_reading_is_reported_down_then_declared_dead_and_rebound() {
    let (release, gate) = watch::channel(false);
    let (addr, binds) = deaf_smsc(gate).await;
    let write_timeout = Duration::from_secs(2);
    let c = connector(addr, |c| {
        c.write_timeout = write_timeout;
        // The held re-bind must not time out before the test releases it.
        c.response_timeout = Duration::from_secs(3);
    });
    wait_for("bound", Duration::from_secs(5), || c.health() == Health::Up).await;

    // Our enquire_link_resp writes pile up unread: within about a second of the
    // stall the bind reports itself down, before it is declared dead.
    let mut reason = String::new();
    wait_for(
        "health down while writes stall",
        Duration::from_secs(5),
        || match c.health() {
            Health::Down(r) => {
                reason = r;
                true
            }
            _ => false,
        },
    )
    .await;
    let down_at = Instant::now();
    assert!(reason.contains("stalled"), "{reason}");
    assert_eq!(binds.load(Ordering::SeqCst), 1, "not yet declared dead");
    // No submit goes to a stalled bind; the caller can retry elsewhere at once.
    let r = tokio::time::timeout(Duration::from_millis(500), c.submit(&sms("+48500000001"))).await;
    assert!(
        matches!(r, Ok(Err(DeliveryError::Unavailable { .. }))),
        "{r:?}"
    );

    // At the write timeout the bind is dropped and a new one is attempted.
    wait_for("reconnect", write_timeout + Duration::from_secs(2), || {
        binds.load(Ordering::SeqCst) >= 2
    })
    .await;
    let rebind_after = down_at.elapsed();
    assert!(
        rebind_after >= Duration::from_millis(700),
        "declared dead only at the write timeout, not {rebind_after:?} after the stall showed"
    );
    // Still down while the new bind waits for its answer, with the reason.
    tokio::time::sleep(Duration::from_millis(100)).await;
    match c.health() {
        Health::Down(r) => assert!(r.contains("stopped reading"), "{r}"),
        other => panic!("health while rebinding: {other:?}"),
    }

    release.send_replace(true);
    wait_for("rebound", Duration::from_secs(5), || {
        c.health() == Health::Up
    })
    .await;
    let sub = c.submit(&sms("+48500000002")).await.unwrap();
    assert_eq!(sub.provider_id, "s1", "the new bind submits");
    c.close().await;
}

/// Binds, then never reads again but keeps talking: an enquire_link every 100 ms,
/// far too little to fill any socket buffer. Counts binds.
async fn mute_smsc() -> (SocketAddr, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let binds = Arc::new(AtomicUsize::new(0));
    let b = binds.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let b = b.clone();
            tokio::spawn(async move {
                let (mut rd, tx) = split(s);
                let Some(seq) = read_bind(&mut rd).await else {
                    return;
                };
                b.fetch_add(1, Ordering::SeqCst);
                let _ = tx.send(bind_resp(seq));
                for seq in 1.. {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    if tx.send(pdu(seq, Pdu::EnquireLink)).is_err() || tx.is_closed() {
                        break;
                    }
                }
                drop(rd);
            });
        }
    });
    (addr, binds)
}

#[tokio::test]
async fn an_smsc_that_talks_but_stops_answering_is_probed_and_rebound() {
    // Its reads stopped but the buffers still take our writes, and it is never
    // idle: neither the write timeout nor the idle keepalive would notice.
    let (addr, binds) = mute_smsc().await;
    let (inbound, _rx) = mpsc::channel(8);
    let stop = CancellationToken::new();
    let cfg = SessionConfig {
        response_timeout: Duration::from_millis(300),
        enquire_link: Duration::from_secs(30),
        write_timeout: Duration::from_secs(30),
        ..session_cfg(addr, 4)
    };
    let (s, _task) = Session::spawn(cfg, inbound, stop.clone());
    bound(&s).await;
    let t0 = Instant::now();
    assert_eq!(
        s.submit(submit_pdu("48500000001")).await,
        Err(super::session::SubmitError::Timeout(Duration::from_millis(
            300
        )))
    );
    // The unanswered submit sends an enquire_link; unanswered too, the link is dead.
    wait_for("rebound after the probe", Duration::from_secs(3), || {
        binds.load(Ordering::SeqCst) >= 2
    })
    .await;
    assert!(s.drops() >= 1);
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    stop.cancel();
}

// ---------------------------------------------------------------------------
// (b) An SMSC that floods receipts for unknown ids.

#[derive(Default)]
struct Flood {
    /// submit_sm seen.
    submits: AtomicUsize,
    /// Receipt ids answered ESME_ROK.
    acked: Mutex<HashSet<usize>>,
    /// deliver_sm answered with an error (and sent again later).
    refused: AtomicUsize,
}

/// Answers submits at once and, after the bind, sends `n` receipts for ids nobody
/// knows (`unk<i>`) as fast as it can. A receipt answered with an error is sent
/// again `resend_after` later, as SMSCs do, until it is answered ESME_ROK.
async fn flooding_smsc(n: usize, resend_after: Duration) -> (SocketAddr, Arc<Flood>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let stats = Arc::new(Flood::default());
    let st = stats.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let st = st.clone();
            tokio::spawn(async move {
                let (mut rd, tx) = split(s);
                let Some(seq) = read_bind(&mut rd).await else {
                    return;
                };
                let _ = tx.send(bind_resp(seq));
                // Which receipt each of our deliver_sm sequence numbers carried.
                let sent: Arc<Mutex<HashMap<u32, usize>>> = Arc::default();
                let next_seq = Arc::new(AtomicUsize::new(1));
                let send = {
                    let (tx, sent, next_seq) = (tx.clone(), sent.clone(), next_seq.clone());
                    move |i: usize| {
                        let seq = next_seq.fetch_add(1, Ordering::SeqCst) as u32;
                        sent.lock().unwrap().insert(seq, i);
                        let _ = tx.send(receipt(seq, &format!("unk{i}")));
                    }
                };
                for i in 0..n {
                    send(i);
                }
                while let Some((h, _)) = rd.next().await {
                    match h.command_id {
                        DELIVER_SM_RESP => {
                            let Some(i) = sent.lock().unwrap().remove(&h.sequence_number) else {
                                continue;
                            };
                            if h.command_status == 0 {
                                st.acked.lock().unwrap().insert(i);
                            } else {
                                st.refused.fetch_add(1, Ordering::SeqCst);
                                let send = send.clone();
                                tokio::spawn(async move {
                                    tokio::time::sleep(resend_after).await;
                                    send(i);
                                });
                            }
                        }
                        SUBMIT_SM => {
                            let k = st.submits.fetch_add(1, Ordering::SeqCst) + 1;
                            let _ = tx.send(submit_resp(h.sequence_number, &format!("S{k}")));
                        }
                        ENQUIRE_LINK => {
                            let _ = tx.send(pdu(h.sequence_number, Pdu::EnquireLinkResp));
                        }
                        UNBIND => {
                            let _ = tx.send(pdu(h.sequence_number, Pdu::UnbindResp));
                        }
                        _ => {}
                    }
                }
            });
        }
    });
    (addr, stats)
}

#[tokio::test]
async fn a_flood_of_unknown_receipts_neither_holds_up_submits_nor_grows_without_bound() {
    const RECEIPTS: usize = 100;
    // The gateway holds a receipt it cannot match for seconds before giving up on it
    // (the race with its own submit record); this stand-in holds each for 1.5 s.
    const HOLD: Duration = Duration::from_millis(1500);
    let (addr, flood) = flooding_smsc(RECEIPTS, Duration::from_millis(200)).await;
    let (receipts_tx, mut receipts_rx) = mpsc::channel::<Receipt>(1000);
    let held = Arc::new(AtomicUsize::new(0));
    let most_held = Arc::new(AtomicUsize::new(0));
    let got = Arc::new(AtomicUsize::new(0));
    {
        let (held, most_held, got) = (held.clone(), most_held.clone(), got.clone());
        tokio::spawn(async move {
            while let Some(mut r) = receipts_rx.recv().await {
                assert!(r.provider_id.starts_with("unk"), "{}", r.provider_id);
                got.fetch_add(1, Ordering::SeqCst);
                let now = held.fetch_add(1, Ordering::SeqCst) + 1;
                most_held.fetch_max(now, Ordering::SeqCst);
                let stored = r.stored.take().unwrap();
                let held = held.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(HOLD).await;
                    held.fetch_sub(1, Ordering::SeqCst);
                    let _ = stored.send(());
                });
            }
        });
    }
    let window = 8;
    let cfg = SmppConfig {
        host: addr.ip().to_string(),
        port: addr.port(),
        password: "secret".into(),
        binds: 1,
        window,
        response_timeout: Duration::from_secs(1),
        ..SmppConfig::default()
    };
    let c = connector_with(cfg, receipts_tx);
    wait_for("flood started", Duration::from_secs(5), || {
        got.load(Ordering::SeqCst) > 0
    })
    .await;

    // Submits go on while the receipts are held: each answered promptly.
    for i in 0..20 {
        let t0 = Instant::now();
        let r = c.submit(&sms(&format!("+4850000{i:04}"))).await;
        let took = t0.elapsed();
        assert!(r.is_ok(), "submit {i} during the flood: {r:?}");
        assert!(
            took < Duration::from_millis(500),
            "submit {i} took {took:?} during the flood"
        );
    }
    assert_eq!(flood.submits.load(Ordering::SeqCst), 20);

    // The backlog drains at the SMSC's pace: every receipt ends up acknowledged.
    wait_for(
        "every flooded receipt acknowledged",
        Duration::from_secs(30),
        || flood.acked.lock().unwrap().len() == RECEIPTS,
    )
    .await;
    // Bounded: never more than the bind's share with the gateway at once; the rest
    // waited at the SMSC (answered with a temporary error, sent again later).
    let most = most_held.load(Ordering::SeqCst);
    assert!(most <= window * 4, "{most} receipts held at once");
    assert!(flood.refused.load(Ordering::SeqCst) > 0);
    c.close().await;
}

// ---------------------------------------------------------------------------
// (c) A caller that gives up while its request waits for the window.

/// Answers every submit after `delay`; counts the submit_sm it received.
async fn slow_smsc(delay: Duration) -> (SocketAddr, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let submits = Arc::new(AtomicUsize::new(0));
    let n = submits.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let n = n.clone();
            tokio::spawn(async move {
                let (mut rd, tx) = split(s);
                let Some(seq) = read_bind(&mut rd).await else {
                    return;
                };
                let _ = tx.send(bind_resp(seq));
                behave(rd, tx, n, delay).await;
            });
        }
    });
    (addr, submits)
}

fn submit_pdu(to: &str) -> SubmitSm {
    SubmitSm::builder()
        .source_addr("Goniec".parse().unwrap())
        .destination_addr(to.parse().unwrap())
        .short_message("hello".parse().unwrap())
        .build()
}

fn session_cfg(addr: SocketAddr, window: usize) -> SessionConfig {
    SessionConfig {
        addr: addr.to_string(),
        password: "secret".into(),
        window,
        response_timeout: Duration::from_secs(3),
        backoff_min: Duration::from_millis(20),
        backoff_max: Duration::from_millis(50),
        ..SessionConfig::default()
    }
}

async fn bound(s: &Session) {
    wait_for("bound", Duration::from_secs(5), || s.is_bound()).await;
}

#[tokio::test]
async fn a_request_whose_caller_gave_up_before_it_was_written_is_never_sent() {
    let (addr, submits) = slow_smsc(Duration::from_millis(600)).await;
    let (inbound, _rx) = mpsc::channel(8);
    let stop = CancellationToken::new();
    let (s, _task) = Session::spawn(session_cfg(addr, 2), inbound, stop.clone());
    bound(&s).await;

    // Two submits fill the window for 600 ms.
    let first: Vec<_> = (0..2)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move { s.submit(submit_pdu(&format!("4850000000{i}"))).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A third waits for the window; its caller times out and goes away (as the
    // gateway's dispatch timeout does, before retrying the message).
    let gave_up = tokio::time::timeout(
        Duration::from_millis(100),
        s.submit(submit_pdu("48500000009")),
    )
    .await;
    assert!(
        gave_up.is_err(),
        "still waiting for the window: {gave_up:?}"
    );
    for h in first {
        assert!(h.await.unwrap().is_ok());
    }
    // The window is free again; the withdrawn request is not what fills it.
    let id = s.submit(submit_pdu("48500000003")).await.unwrap();
    assert_eq!(id, "S3", "the SMSC's third submit_sm is this one");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        submits.load(Ordering::SeqCst),
        3,
        "the request whose caller was gone must not reach the SMSC"
    );
    assert_eq!(s.abandoned(), 1);
    assert_eq!(s.orphaned(), 0);
    stop.cancel();
}

#[tokio::test]
async fn a_request_written_before_its_caller_gave_up_is_tracked_to_its_response() {
    let (addr, submits) = slow_smsc(Duration::from_millis(300)).await;
    let (inbound, _rx) = mpsc::channel(8);
    let stop = CancellationToken::new();
    let (s, _task) = Session::spawn(session_cfg(addr, 2), inbound, stop.clone());
    bound(&s).await;
    let gave_up = tokio::time::timeout(
        Duration::from_millis(100),
        s.submit(submit_pdu("48500000001")),
    )
    .await;
    assert!(gave_up.is_err());
    // Its answer still arrives and is accounted for (logged as uncertain), once;
    // the session is not thrown off by a response nobody waits for.
    wait_for("the orphaned answer", Duration::from_secs(2), || {
        s.orphaned() == 1
    })
    .await;
    assert_eq!(s.submit(submit_pdu("48500000002")).await.unwrap(), "S2");
    assert_eq!(submits.load(Ordering::SeqCst), 2);
    assert_eq!(s.abandoned(), 0);
    stop.cancel();
}
