//! An SMTP sink: a real ESMTP server on TCP (RFC 5321) that accepts mail and
//! throws it away, for `goniec demo`, tests and benches.
//!
//! It plays the mail relay the e-mail connector talks to, so the connector can
//! be driven over real SMTP, failures included:
//!
//! * **Sessions**: one task per connection (at most
//!   [`SinkConfig::max_connections`]; one more is answered
//!   `421 4.3.2` and closed at once). The greeting is `220 <hostname> ESMTP`.
//!   `EHLO` advertises `PIPELINING`, `8BITMIME`, `SMTPUTF8`,
//!   `ENHANCEDSTATUSCODES`, `SIZE <max>`, `STARTTLS` (when TLS is configured and
//!   not active yet) and `AUTH PLAIN LOGIN` (not before STARTTLS when it is
//!   required); `HELO` is answered plainly. `MAIL FROM` takes `SIZE`, `BODY`,
//!   `SMTPUTF8` and `AUTH` parameters (others get `555`), and the null path `<>`;
//!   `RCPT TO` many times (at most [`SinkConfig::max_recipients`], then `452`);
//!   `DATA` reads up to `<CR><LF>.<CR><LF>`, undoing dot-stuffing. `RSET`,
//!   `NOOP`, `HELP`, `QUIT` and `VRFY` (`252`) are served; `EXPN`, `BDAT`,
//!   `TURN`, `ETRN`, ... get `502`, unknown commands `500`, commands out of order
//!   `503` (`554` for `DATA` without an accepted recipient). Replies carry
//!   RFC 3463 enhanced status codes.
//! * **Pipelining** (RFC 2920): commands are read from a buffer and answered in
//!   order; replies are written out whenever the input buffer holds no complete
//!   command, so a client may send `MAIL`/`RCPT`/`DATA` (or a whole session) in
//!   one write.
//! * **AUTH** (RFC 4954): `PLAIN` and `LOGIN`, with or without an initial
//!   response; `*` cancels. With [`SinkConfig::require_auth`], `MAIL` before a
//!   successful `AUTH` is refused with `530 5.7.0` and credentials must match
//!   (`535 5.7.8` otherwise); without it any well-formed credentials pass, so a
//!   client configured with credentials works against an open sink too.
//! * **STARTTLS** (RFC 3207): with [`SinkConfig::starttls`] (or
//!   [`SinkConfig::require_starttls`]) a self-signed certificate for the
//!   hostname, `localhost`, `127.0.0.1` and `::1` is generated at start
//!   ([`SmtpSink::certificate_der`] gives it to clients that want to pin it) and
//!   served with rustls (ring provider, TLS 1.2 and 1.3). Input pipelined
//!   after `STARTTLS` is discarded (no plaintext command injection) and the
//!   session starts over: the client must `EHLO` again. With
//!   `require_starttls`, `MAIL`, `RCPT`, `DATA`, `AUTH` and `VRFY` before TLS get
//!   `530 5.7.0`.
//! * **Fault injection**: every [`SinkConfig::temp_fail_every`]-th message is
//!   answered `451 4.3.0`, else every [`SinkConfig::perm_fail_every`]-th
//!   `550 5.1.1 <addr>: mailbox unknown`. Messages are numbered over all
//!   connections, at the end of `DATA` (those within the size limit) or, with
//!   [`FailAt::Rcpt`], at each `RCPT` (the answer then names that recipient).
//!   Recipients whose local part starts with one of
//!   [`SinkConfig::bounce_prefixes`] (`bounce` by default) always get `550 5.1.1`.
//!   A message over [`SinkConfig::max_size`] gets `552 5.3.4` (at `MAIL` when its
//!   `SIZE` says so, else at the end of `DATA`).
//! * **Robustness**: a command line over [`MAX_LINE`] octets is discarded as it
//!   comes and answered `500 5.5.6`; `DATA` keeps at most `max_size` octets;
//!   neither buffers unbounded input. Every read and write is bounded by
//!   [`SinkConfig::idle_timeout`] (`421 4.4.2` on expiry); [`MAX_ERRORS`] bad
//!   commands on one connection end it with `421 4.7.0`. When the
//!   `CancellationToken` is cancelled, open sessions get `421 4.3.2` and the
//!   listener closes. Nothing here panics on input from the network.
//! * **Inspection**: [`SmtpSink::stats`] returns a [`SinkStats`] snapshot
//!   (serialisable); [`SmtpSink::messages`] the last [`SinkConfig::keep`] accepted
//!   messages (envelope and unstuffed data), at most [`MAX_KEPT_BYTES`] of data
//!   in all.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::timeout;
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// Longest command line (and AUTH response line) accepted, in octets with the
/// CRLF (RFC 5321 §4.5.3.1 allows 512 for commands, 1000 for text lines).
pub const MAX_LINE: usize = 1000;
/// Bad commands (5xx for syntax or sequence) after which a connection is closed.
pub const MAX_ERRORS: u32 = 20;
/// Most data kept in [`SmtpSink::messages`] over all kept messages; the oldest go
/// first (the newest message is always kept).
pub const MAX_KEPT_BYTES: usize = 64 * 1024 * 1024;

/// Bytes asked of the socket at a time.
const READ_CHUNK: usize = 8192;
/// A DATA line longer than this is passed on in pieces instead of buffered whole.
const DATA_PIECE: usize = 64 * 1024;
/// Replies queued before they are written even if more commands are waiting.
const FLUSH_AT: usize = 16 * 1024;
/// How long a shutting-down or timed-out session tries to say goodbye.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(1);
/// `334` challenges of AUTH LOGIN: base64 of `Username:` and `Password:`.
const LOGIN_USER: &str = "334 VXNlcm5hbWU6";
const LOGIN_PASS: &str = "334 UGFzc3dvcmQ6";

/// Where the share of failures set by [`SinkConfig::temp_fail_every`] and
/// [`SinkConfig::perm_fail_every`] is applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FailAt {
    /// At the end of DATA, counting messages.
    #[default]
    Data,
    /// At RCPT TO, counting recipients.
    Rcpt,
}

/// What the sink accepts and how it behaves.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// The name in the greeting, the EHLO reply and the certificate.
    pub hostname: String,
    /// Every n-th message (or recipient, see [`Self::fail_at`]) is answered
    /// `451 4.3.0` (0 = never).
    pub temp_fail_every: u64,
    /// Every n-th message (or recipient) not temporarily failed is answered
    /// `550 5.1.1 <addr>: mailbox unknown` (0 = never).
    pub perm_fail_every: u64,
    /// Whether the failure shares apply at the end of DATA or at RCPT.
    pub fail_at: FailAt,
    /// Recipients whose local part starts with one of these (ASCII case
    /// ignored) always get `550 5.1.1` at RCPT.
    pub bounce_prefixes: Vec<String>,
    /// `(user, password)` that AUTH must present before MAIL; `None`: AUTH is
    /// optional and any credentials pass.
    pub require_auth: Option<(String, String)>,
    /// Offer STARTTLS with a self-signed certificate generated at start.
    pub starttls: bool,
    /// Refuse mail before STARTTLS (implies [`Self::starttls`]).
    pub require_starttls: bool,
    /// Largest message accepted, in octets after dot-unstuffing (`552` above).
    pub max_size: usize,
    /// Most recipients per message (`452 4.5.3` above; RFC 5321 wants at least 100).
    pub max_recipients: usize,
    /// How many accepted messages [`SmtpSink::messages`] keeps (0 = none; their
    /// data is then counted, not stored).
    pub keep: usize,
    /// Most connections served at once; more are answered `421` and closed.
    pub max_connections: usize,
    /// A read or write waiting longer than this ends the session with `421 4.4.2`.
    pub idle_timeout: Duration,
}

impl Default for SinkConfig {
    fn default() -> Self {
        Self {
            hostname: "localhost".into(),
            temp_fail_every: 0,
            perm_fail_every: 0,
            fail_at: FailAt::Data,
            bounce_prefixes: vec!["bounce".into()],
            require_auth: None,
            starttls: false,
            require_starttls: false,
            max_size: 10 * 1024 * 1024,
            max_recipients: 1000,
            keep: 100,
            max_connections: 256,
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// A snapshot of the sink's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SinkStats {
    /// Connections served (greeted), since start.
    pub connections: u64,
    /// Connections open now.
    pub sessions: u64,
    /// Connections refused over [`SinkConfig::max_connections`].
    pub refused: u64,
    /// Messages accepted (`250` after DATA).
    pub messages: u64,
    /// Recipients of the accepted messages.
    pub recipients: u64,
    /// Octets of the accepted messages (after dot-unstuffing).
    pub bytes: u64,
    /// `451` answers of [`SinkConfig::temp_fail_every`].
    pub temp_failed: u64,
    /// `550 5.1.1` answers, of [`SinkConfig::perm_fail_every`] and bounce prefixes.
    pub perm_failed: u64,
    /// Of those, for a bounce prefix.
    pub bounced: u64,
    /// `552` answers: messages over [`SinkConfig::max_size`].
    pub too_big: u64,
    /// Successful AUTH exchanges.
    pub auth_ok: u64,
    /// Failed AUTH exchanges (bad credentials, bad encoding, cancelled).
    pub auth_failed: u64,
    /// Successful STARTTLS handshakes.
    pub starttls: u64,
    /// Failed or timed-out TLS handshakes.
    pub tls_failed: u64,
    /// Commands answered 500/501/502/503/504/530/555 (syntax, sequence, policy).
    pub bad_commands: u64,
    /// Command lines over [`MAX_LINE`].
    pub long_lines: u64,
    /// Sessions ended by [`SinkConfig::idle_timeout`].
    pub timeouts: u64,
}

/// One accepted message, as [`SmtpSink::messages`] keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMail {
    /// The id in the `250 2.0.0 Ok: queued as <id>` reply.
    pub id: String,
    /// The EHLO/HELO argument.
    pub helo: String,
    /// The envelope sender (empty for the null path `<>`).
    pub from: String,
    /// The accepted recipients, in order.
    pub rcpts: Vec<String>,
    /// The message as received, dot-unstuffing undone, without the final `.` line.
    pub data: Vec<u8>,
    /// Whether it came over TLS.
    pub tls: bool,
    /// The AUTH user, when the session authenticated.
    pub auth_user: Option<String>,
}

#[derive(Debug, Default)]
struct Counters {
    connections: AtomicU64,
    sessions: AtomicU64,
    refused: AtomicU64,
    messages: AtomicU64,
    recipients: AtomicU64,
    bytes: AtomicU64,
    temp_failed: AtomicU64,
    perm_failed: AtomicU64,
    bounced: AtomicU64,
    too_big: AtomicU64,
    auth_ok: AtomicU64,
    auth_failed: AtomicU64,
    starttls: AtomicU64,
    tls_failed: AtomicU64,
    bad_commands: AtomicU64,
    long_lines: AtomicU64,
    timeouts: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

fn add(c: &AtomicU64, n: usize) {
    c.fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
}

/// A running sink. Cheap to clone; it serves until the `CancellationToken`
/// given to [`SmtpSink::start`] is cancelled.
#[derive(Clone)]
pub struct SmtpSink {
    inner: Arc<Inner>,
    local_addr: SocketAddr,
}

impl std::fmt::Debug for SmtpSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSink")
            .field("local_addr", &self.local_addr)
            .field("stats", &self.stats())
            .finish()
    }
}

struct Inner {
    cfg: SinkConfig,
    tls: Option<Tls>,
    counters: Counters,
    /// Messages (or recipients, with [`FailAt::Rcpt`]) numbered for the failure shares.
    numbered: AtomicU64,
    /// Ids of accepted messages.
    next_id: AtomicU64,
    kept: Mutex<Kept>,
    slots: Arc<Semaphore>,
}

struct Tls {
    acceptor: TlsAcceptor,
    cert_der: Vec<u8>,
}

#[derive(Default)]
struct Kept {
    mails: VecDeque<ReceivedMail>,
    bytes: usize,
}

impl SmtpSink {
    /// Bind `addr` (port 0 = a free port) and serve until `shutdown` is
    /// cancelled. Must be called inside a tokio runtime. Fails when the address
    /// cannot be bound or the TLS certificate cannot be made.
    pub async fn start(
        addr: SocketAddr,
        mut cfg: SinkConfig,
        shutdown: CancellationToken,
    ) -> std::io::Result<SmtpSink> {
        cfg.starttls |= cfg.require_starttls;
        cfg.max_connections = cfg.max_connections.max(1);
        let tls = if cfg.starttls {
            Some(make_tls(&cfg.hostname)?)
        } else {
            None
        };
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let inner = Arc::new(Inner {
            slots: Arc::new(Semaphore::new(cfg.max_connections)),
            cfg,
            tls,
            counters: Counters::default(),
            numbered: AtomicU64::new(0),
            next_id: AtomicU64::new(0),
            kept: Mutex::new(Kept::default()),
        });
        tokio::spawn(accept_loop(listener, inner.clone(), shutdown));
        tracing::info!(%local_addr, "SMTP sink listening");
        Ok(SmtpSink { inner, local_addr })
    }

    /// The address the sink listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The self-signed certificate served on STARTTLS (DER), for clients that
    /// pin it; `None` without TLS.
    pub fn certificate_der(&self) -> Option<&[u8]> {
        self.inner.tls.as_ref().map(|t| t.cert_der.as_slice())
    }

    /// The last accepted messages kept (at most [`SinkConfig::keep`]), oldest first.
    pub fn messages(&self) -> Vec<ReceivedMail> {
        self.inner.kept().mails.iter().cloned().collect()
    }

    /// Forget the kept messages (the counters stay).
    pub fn clear_messages(&self) {
        *self.inner.kept() = Kept::default();
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> SinkStats {
        let c = &self.inner.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SinkStats {
            connections: get(&c.connections),
            sessions: get(&c.sessions),
            refused: get(&c.refused),
            messages: get(&c.messages),
            recipients: get(&c.recipients),
            bytes: get(&c.bytes),
            temp_failed: get(&c.temp_failed),
            perm_failed: get(&c.perm_failed),
            bounced: get(&c.bounced),
            too_big: get(&c.too_big),
            auth_ok: get(&c.auth_ok),
            auth_failed: get(&c.auth_failed),
            starttls: get(&c.starttls),
            tls_failed: get(&c.tls_failed),
            bad_commands: get(&c.bad_commands),
            long_lines: get(&c.long_lines),
            timeouts: get(&c.timeouts),
        }
    }
}

fn make_tls(hostname: &str) -> std::io::Result<Tls> {
    let mut names = vec![hostname.to_string()];
    for n in ["localhost", "127.0.0.1", "::1"] {
        if !names.iter().any(|h| h.eq_ignore_ascii_case(n)) {
            names.push(n.to_string());
        }
    }
    let ck = rcgen::generate_simple_self_signed(names).map_err(std::io::Error::other)?;
    let cert = ck.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
    // The provider is named, not taken from the process default, so another crate
    // enabling a second provider cannot make this ambiguous.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .map_err(std::io::Error::other)?;
    Ok(Tls {
        acceptor: TlsAcceptor::from(Arc::new(config)),
        cert_der: cert.to_vec(),
    })
}

impl Inner {
    fn kept(&self) -> MutexGuard<'_, Kept> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn keep(&self, mail: ReceivedMail) {
        let keep = self.cfg.keep;
        if keep == 0 {
            return;
        }
        let mut k = self.kept();
        k.bytes += mail.data.len();
        k.mails.push_back(mail);
        while k.mails.len() > keep || (k.bytes > MAX_KEPT_BYTES && k.mails.len() > 1) {
            if let Some(old) = k.mails.pop_front() {
                k.bytes -= old.data.len();
            }
        }
    }

    /// The failure share's verdict for the next numbered message or recipient.
    fn verdict(&self) -> Verdict {
        let n = self.numbered.fetch_add(1, Ordering::Relaxed) + 1;
        let every = |k: u64| k > 0 && n.is_multiple_of(k);
        if every(self.cfg.temp_fail_every) {
            Verdict::Temp
        } else if every(self.cfg.perm_fail_every) {
            Verdict::Perm
        } else {
            Verdict::Accept
        }
    }

    fn bounces(&self, rcpt: &str) -> bool {
        let local = rcpt.rsplit_once('@').map_or(rcpt, |(l, _)| l).as_bytes();
        self.cfg.bounce_prefixes.iter().any(|p| {
            let p = p.as_bytes();
            !p.is_empty() && local.len() >= p.len() && local[..p.len()].eq_ignore_ascii_case(p)
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Accept,
    Temp,
    Perm,
}

async fn accept_loop(listener: TcpListener, inner: Arc<Inner>, shutdown: CancellationToken) {
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: back off, don't spin.
                    tracing::warn!(error = %e, "SMTP sink: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        match inner.slots.clone().try_acquire_owned() {
            Ok(permit) => {
                tokio::spawn(connection(
                    inner.clone(),
                    tcp,
                    peer,
                    shutdown.clone(),
                    permit,
                ));
            }
            Err(_) => {
                bump(&inner.counters.refused);
                // Best effort, never waiting: the socket is fresh, its buffer empty.
                let _ = tcp.try_write(b"421 4.3.2 Too many connections, try again later\r\n");
            }
        }
    }
    tracing::debug!("SMTP sink stopped accepting");
}

/// Counts an open session; uncounts it however the session ends.
struct OpenSession<'a>(&'a Counters);

impl Drop for OpenSession<'_> {
    fn drop(&mut self) {
        self.0.sessions.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn connection(
    inner: Arc<Inner>,
    tcp: TcpStream,
    peer: SocketAddr,
    shutdown: CancellationToken,
    _permit: OwnedSemaphorePermit,
) {
    let c = &inner.counters;
    bump(&c.connections);
    bump(&c.sessions);
    let _open = OpenSession(c);
    let _ = tcp.set_nodelay(true);
    tracing::debug!(%peer, "SMTP sink: connection");
    let idle = inner.cfg.idle_timeout;
    let mut session = Session::new(&inner);
    let mut io = Io::new(tcp, idle, shutdown.clone());
    io.reply(&format!(
        "220 {} ESMTP Goniec smtp-sink",
        inner.cfg.hostname
    ));
    if session.serve(&mut io).await != Exit::StartTls {
        return;
    }
    // Whatever the client sent after STARTTLS is dropped with the plain buffer.
    let Some(tls) = &inner.tls else { return };
    let handshake = tokio::select! {
        _ = shutdown.cancelled() => return,
        r = timeout(idle, tls.acceptor.accept(io.stream)) => r,
    };
    match handshake {
        Ok(Ok(stream)) => {
            bump(&c.starttls);
            session.restart_tls();
            let mut io = Io::new(stream, idle, shutdown);
            session.serve(&mut io).await;
        }
        Ok(Err(e)) => {
            bump(&c.tls_failed);
            tracing::debug!(%peer, error = %e, "SMTP sink: TLS handshake failed");
        }
        Err(_) => {
            bump(&c.tls_failed);
            tracing::debug!(%peer, "SMTP sink: TLS handshake timed out");
        }
    }
}

/// Why reading or writing stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The peer closed the connection.
    Eof,
    /// Nothing moved within the idle timeout.
    Timeout,
    /// The sink is shutting down.
    Shutdown,
    /// A socket or TLS error.
    Failed,
}

/// A buffered connection: bounded line and DATA reads, replies queued and
/// written before the next read that has to wait.
struct Io<S> {
    stream: S,
    buf: Vec<u8>,
    pos: usize,
    out: Vec<u8>,
    idle: Duration,
    shutdown: CancellationToken,
}

/// A message body as read from DATA.
struct Body {
    data: Vec<u8>,
    size: usize,
    too_big: bool,
}

impl Body {
    fn push(&mut self, bytes: &[u8], max: usize, store: bool) {
        self.size = self.size.saturating_add(bytes.len());
        if self.size > max {
            if !self.too_big {
                self.too_big = true;
                self.data = Vec::new();
            }
        } else if store {
            self.data.extend_from_slice(bytes);
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Io<S> {
    fn new(stream: S, idle: Duration, shutdown: CancellationToken) -> Self {
        Self {
            stream,
            buf: Vec::with_capacity(READ_CHUNK),
            pos: 0,
            out: Vec::new(),
            idle,
            shutdown,
        }
    }

    /// Queue one reply line (CRLF added).
    fn reply(&mut self, line: &str) {
        self.out.extend_from_slice(line.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    /// Whether a complete line waits in the buffer (more pipelined commands).
    fn has_line(&self) -> bool {
        self.buf[self.pos..].contains(&b'\n')
    }

    async fn flush(&mut self) -> Result<(), End> {
        if self.out.is_empty() {
            return Ok(());
        }
        let (stream, out) = (&mut self.stream, &self.out);
        let write = async move {
            stream.write_all(out).await?;
            stream.flush().await
        };
        let r = tokio::select! {
            _ = self.shutdown.cancelled() => return Err(End::Shutdown),
            r = timeout(self.idle, write) => r,
        };
        match r {
            Ok(Ok(())) => {
                self.out.clear();
                Ok(())
            }
            Ok(Err(_)) => Err(End::Failed),
            Err(_) => Err(End::Timeout),
        }
    }

    /// Write the queued replies, then read more input into the buffer.
    async fn fill(&mut self) -> Result<(), End> {
        self.flush().await?;
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.reserve(READ_CHUNK);
        let read = self.stream.read_buf(&mut self.buf);
        tokio::select! {
            _ = self.shutdown.cancelled() => Err(End::Shutdown),
            r = timeout(self.idle, read) => match r {
                Ok(Ok(0)) => Err(End::Eof),
                Ok(Ok(_)) => Ok(()),
                Ok(Err(_)) => Err(End::Failed),
                Err(_) => Err(End::Timeout),
            },
        }
    }

    /// Shut the sending side, then drain what the peer still sends for a moment,
    /// so unread input does not turn the close into a reset that could destroy
    /// the last replies before the peer reads them.
    async fn close(&mut self) {
        let stream = &mut self.stream;
        let _ = timeout(GOODBYE_TIMEOUT, async move {
            let _ = stream.shutdown().await;
            let mut scratch = [0u8; 1024];
            let mut drained = 0;
            while drained < 64 * 1024 {
                match stream.read(&mut scratch).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => drained += n,
                }
            }
        })
        .await;
    }

    /// The next line without its line end; `None` for a line over [`MAX_LINE`],
    /// which is dropped as it arrives.
    async fn read_line(&mut self) -> Result<Option<Vec<u8>>, End> {
        let mut too_long = false;
        loop {
            let avail = &self.buf[self.pos..];
            if let Some(i) = avail.iter().position(|&b| b == b'\n') {
                let long = too_long || i + 1 > MAX_LINE;
                let line = avail[..i].strip_suffix(b"\r").unwrap_or(&avail[..i]);
                let line = (!long).then(|| line.to_vec());
                self.pos += i + 1;
                return Ok(line);
            }
            if avail.len() > MAX_LINE {
                too_long = true;
                self.pos = self.buf.len();
            }
            self.fill().await?;
        }
    }

    /// A message up to the `.` line, dot-unstuffed, keeping at most `max` octets
    /// (and none unless `store`).
    async fn read_data(&mut self, max: usize, store: bool) -> Result<Body, End> {
        let mut body = Body {
            data: Vec::new(),
            size: 0,
            too_big: false,
        };
        let mut at_line_start = true;
        loop {
            let avail = &self.buf[self.pos..];
            match avail.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    let line = &avail[..=i];
                    if at_line_start && line == b".\r\n" {
                        self.pos += i + 1;
                        return Ok(body);
                    }
                    let content = match line.strip_prefix(b".") {
                        Some(rest) if at_line_start => rest,
                        _ => line,
                    };
                    body.push(content, max, store);
                    at_line_start = true;
                    self.pos += i + 1;
                }
                None if avail.len() >= DATA_PIECE => {
                    // A long line: pass on what is here; it cannot be the end.
                    let content = match avail.strip_prefix(b".") {
                        Some(rest) if at_line_start => rest,
                        _ => avail,
                    };
                    body.push(content, max, store);
                    at_line_start = false;
                    self.pos = self.buf.len();
                }
                None => self.fill().await?,
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exit {
    Closed,
    StartTls,
}

/// An open mail transaction (after MAIL FROM).
struct Txn {
    from: String,
    rcpts: Vec<String>,
}

/// One connection's SMTP state.
struct Session<'a> {
    inner: &'a Inner,
    helo: Option<String>,
    tls: bool,
    auth_user: Option<String>,
    txn: Option<Txn>,
    errors: u32,
}

/// What a command handler wants next.
enum Step {
    /// Next command.
    Go,
    /// Write the queued replies and close (QUIT, too many errors).
    Close,
    /// The session already ended (the peer left, timeout, shutdown).
    Ended,
    /// Write the `220` and hand the socket to TLS.
    StartTls,
}

impl<'a> Session<'a> {
    fn new(inner: &'a Inner) -> Self {
        Self {
            inner,
            helo: None,
            tls: false,
            auth_user: None,
            txn: None,
            errors: 0,
        }
    }

    /// RFC 3207 §4.2: after the handshake the client starts over from EHLO.
    fn restart_tls(&mut self) {
        self.helo = None;
        self.auth_user = None;
        self.txn = None;
        self.tls = true;
    }

    fn cfg(&self) -> &'a SinkConfig {
        &self.inner.cfg
    }

    fn tls_missing(&self) -> bool {
        self.cfg().require_starttls && !self.tls
    }

    /// Answer a bad command; `Close` once there were too many.
    fn bad<S>(&mut self, io: &mut Io<S>, reply: &str) -> Step
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        bump(&self.inner.counters.bad_commands);
        io.reply(reply);
        self.errors += 1;
        if self.errors >= MAX_ERRORS {
            io.reply("421 4.7.0 Too many errors, closing connection");
            Step::Close
        } else {
            Step::Go
        }
    }

    async fn serve<S>(&mut self, io: &mut Io<S>) -> Exit
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        loop {
            let step = match io.read_line().await {
                Ok(Some(line)) => self.command(io, &line).await,
                Ok(None) => {
                    bump(&self.inner.counters.long_lines);
                    self.bad(io, "500 5.5.6 Line too long")
                }
                Err(end) => return self.end(io, end).await,
            };
            match step {
                Step::Go => {
                    if io.out.len() >= FLUSH_AT || !io.has_line() {
                        if let Err(end) = io.flush().await {
                            return self.end(io, end).await;
                        }
                    }
                }
                Step::Close => {
                    let _ = timeout(GOODBYE_TIMEOUT, io.flush()).await;
                    io.close().await;
                    return Exit::Closed;
                }
                Step::Ended => return Exit::Closed,
                Step::StartTls => {
                    return match io.flush().await {
                        Ok(()) => Exit::StartTls,
                        Err(end) => self.end(io, end).await,
                    };
                }
            }
        }
    }

    async fn end<S>(&mut self, io: &mut Io<S>, end: End) -> Exit
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let goodbye = match end {
            End::Timeout => {
                bump(&self.inner.counters.timeouts);
                format!(
                    "421 4.4.2 {} Idle timeout, closing connection",
                    self.cfg().hostname
                )
            }
            End::Shutdown => format!("421 4.3.2 {} Service shutting down", self.cfg().hostname),
            End::Eof | End::Failed => return Exit::Closed,
        };
        // The shutdown token may be cancelled: write past it, briefly.
        io.out.clear();
        io.reply(&goodbye);
        let _ = timeout(GOODBYE_TIMEOUT, io.stream.write_all(&io.out)).await;
        io.out.clear();
        io.close().await;
        Exit::Closed
    }

    async fn command<S>(&mut self, io: &mut Io<S>, line: &[u8]) -> Step
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let (verb, arg) = match line.iter().position(|&b| b == b' ') {
            Some(i) => (&line[..i], &line[i + 1..]),
            None => (line, &[][..]),
        };
        if verb.is_empty() || !verb.iter().all(u8::is_ascii_alphabetic) {
            return self.bad(io, "500 5.5.2 Syntax error, command unrecognized");
        }
        let verb = String::from_utf8_lossy(verb).to_ascii_uppercase();
        let Ok(arg) = std::str::from_utf8(arg) else {
            return self.bad(io, "501 5.5.2 Invalid characters in command");
        };
        let arg = arg.trim();
        match verb.as_str() {
            "EHLO" | "HELO" => self.hello(io, &verb, arg),
            "MAIL" => self.mail(io, arg),
            "RCPT" => self.rcpt(io, arg),
            "DATA" => self.data(io, arg).await,
            "AUTH" => self.auth(io, arg).await,
            "STARTTLS" => self.starttls(io, arg),
            "RSET" => {
                if !arg.is_empty() {
                    return self.bad(io, "501 5.5.4 Syntax: RSET");
                }
                self.txn = None;
                io.reply("250 2.0.0 Ok");
                Step::Go
            }
            "NOOP" => {
                io.reply("250 2.0.0 Ok");
                Step::Go
            }
            "QUIT" => {
                io.reply(&format!("221 2.0.0 {} Bye", self.cfg().hostname));
                Step::Close
            }
            "VRFY" => {
                if self.tls_missing() {
                    return self.bad(io, "530 5.7.0 Must issue a STARTTLS command first");
                }
                if arg.is_empty() {
                    return self.bad(io, "501 5.5.4 Syntax: VRFY <address>");
                }
                io.reply(
                    "252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery",
                );
                Step::Go
            }
            "HELP" => {
                io.reply("214 2.0.0 Commands: HELO EHLO MAIL RCPT DATA RSET NOOP QUIT VRFY AUTH STARTTLS HELP");
                Step::Go
            }
            "EXPN" | "BDAT" | "TURN" | "ETRN" | "ATRN" | "SEND" | "SOML" | "SAML" => {
                self.bad(io, "502 5.5.1 Command not implemented")
            }
            _ => self.bad(io, "500 5.5.2 Syntax error, command unrecognized"),
        }
    }

    fn hello<S>(&mut self, io: &mut Io<S>, verb: &str, arg: &str) -> Step
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        if arg.is_empty() {
            return self.bad(io, &format!("501 5.5.4 Syntax: {verb} hostname"));
        }
        self.helo = Some(arg.to_string());
        self.txn = None;
        let host = &self.cfg().hostname;
        if verb == "HELO" {
            io.reply(&format!("250 {host}"));
            return Step::Go;
        }
        let mut lines = vec![
            format!("{host} greets {arg}"),
            "PIPELINING".to_string(),
            "8BITMIME".to_string(),
            "SMTPUTF8".to_string(),
            "ENHANCEDSTATUSCODES".to_string(),
            format!("SIZE {}", self.cfg().max_size),
        ];
        if self.inner.tls.is_some() && !self.tls {
            lines.push("STARTTLS".into());
        }
        if !self.tls_missing() {
            lines.push("AUTH PLAIN LOGIN".into());
        }
        let last = lines.len() - 1;
        for (i, l) in lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            io.reply(&format!("250{sep}{l}"));
        }
        Step::Go
    }

    fn mail<S>(&mut self, io: &mut Io<S>, arg: &str) -> Step
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        if self.tls_missing() {
            return self.bad(io, "530 5.7.0 Must issue a STARTTLS command first");
        }
        if self.helo.is_none() {
            return self.bad(io, "503 5.5.1 Send EHLO or HELO first");
        }
        if self.txn.is_some() {
            return self.bad(io, "503 5.5.1 Nested MAIL command");
        }
        if self.cfg().require_auth.is_some() && self.auth_user.is_none() {
            return self.bad(io, "530 5.7.0 Authentication required");
        }
        let Some((from, params)) = strip_prefix_ci(arg, "FROM:").and_then(parse_path) else {
            return self.bad(io, "501 5.5.4 Syntax: MAIL FROM:<address>");
        };
        if !from.is_empty() && !valid_mailbox(from) {
            return self.bad(io, "501 5.1.7 Bad sender address syntax");
        }
        for p in params.split_ascii_whitespace() {
            let (key, value) = p.split_once('=').unwrap_or((p, ""));
            match key.to_ascii_uppercase().as_str() {
                "SIZE" => match value.parse::<u64>() {
                    Ok(n) if n > u64::try_from(self.cfg().max_size).unwrap_or(u64::MAX) => {
                        bump(&self.inner.counters.too_big);
                        io.reply("552 5.3.4 Message size exceeds fixed maximum message size");
                        return Step::Go;
                    }
                    Ok(_) => {}
                    Err(_) => return self.bad(io, "501 5.5.4 Bad SIZE parameter"),
                },
                "BODY"
                    if value.eq_ignore_ascii_case("7BIT")
                        || value.eq_ignore_ascii_case("8BITMIME") => {}
                "BODY" => return self.bad(io, "501 5.5.4 Bad BODY parameter"),
                "SMTPUTF8" if value.is_empty() => {}
                "AUTH" => {}
                _ => return self.bad(io, "555 5.5.4 Unsupported MAIL parameter"),
            }
        }
        self.txn = Some(Txn {
            from: from.to_string(),
            rcpts: Vec::new(),
        });
        io.reply("250 2.1.0 Ok");
        Step::Go
    }

    fn rcpt<S>(&mut self, io: &mut Io<S>, arg: &str) -> Step
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        if self.tls_missing() {
            return self.bad(io, "530 5.7.0 Must issue a STARTTLS command first");
        }
        let Some(count) = self.txn.as_ref().map(|t| t.rcpts.len()) else {
            return self.bad(io, "503 5.5.1 Need MAIL before RCPT");
        };
        let Some((to, params)) = strip_prefix_ci(arg, "TO:").and_then(parse_path) else {
            return self.bad(io, "501 5.5.4 Syntax: RCPT TO:<address>");
        };
        if !params.is_empty() {
            return self.bad(io, "555 5.5.4 Unsupported RCPT parameter");
        }
        if !(valid_mailbox(to) || to.eq_ignore_ascii_case("postmaster")) {
            return self.bad(io, "501 5.1.3 Bad recipient address syntax");
        }
        if count >= self.cfg().max_recipients {
            io.reply("452 4.5.3 Too many recipients");
            return Step::Go;
        }
        let inner = self.inner;
        let c = &inner.counters;
        if inner.bounces(to) {
            bump(&c.perm_failed);
            bump(&c.bounced);
            io.reply(&format!("550 5.1.1 <{to}>: mailbox unknown"));
            return Step::Go;
        }
        if self.cfg().fail_at == FailAt::Rcpt {
            match inner.verdict() {
                Verdict::Accept => {}
                Verdict::Temp => {
                    bump(&c.temp_failed);
                    io.reply(&format!(
                        "451 4.3.0 <{to}>: temporary failure, try again later"
                    ));
                    return Step::Go;
                }
                Verdict::Perm => {
                    bump(&c.perm_failed);
                    io.reply(&format!("550 5.1.1 <{to}>: mailbox unknown"));
                    return Step::Go;
                }
            }
        }
        if let Some(txn) = &mut self.txn {
            txn.rcpts.push(to.to_string());
        }
        io.reply("250 2.1.5 Ok");
        Step::Go
    }

    async fn data<S>(&mut self, io: &mut Io<S>, arg: &str) -> Step
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        if self.tls_missing() {
            return self.bad(io, "530 5.7.0 Must issue a STARTTLS command first");
        }
        if !arg.is_empty() {
            return self.bad(io, "501 5.5.4 Syntax: DATA");
        }
        let Some(txn) = self.txn.take() else {
            return self.bad(io, "503 5.5.1 Need MAIL command");
        };
        if txn.rcpts.is_empty() {
            // RFC 2920 §3.1: pipelined DATA after rejected recipients.
            self.txn = Some(txn);
            return self.bad(io, "554 5.5.1 No valid recipients");
        }
        io.reply("354 End data with <CR><LF>.<CR><LF>");
        let (inner, cfg) = (self.inner, self.cfg());
        let body = match io.read_data(cfg.max_size, cfg.keep > 0).await {
            Ok(b) => b,
            Err(end) => {
                self.end(io, end).await;
                return Step::Ended;
            }
        };
        let c = &inner.counters;
        if body.too_big {
            bump(&c.too_big);
            io.reply("552 5.3.4 Message size exceeds fixed maximum message size");
            return Step::Go;
        }
        if cfg.fail_at == FailAt::Data {
            match inner.verdict() {
                Verdict::Accept => {}
                Verdict::Temp => {
                    bump(&c.temp_failed);
                    io.reply("451 4.3.0 Temporary failure, try again later");
                    return Step::Go;
                }
                Verdict::Perm => {
                    bump(&c.perm_failed);
                    let first = txn.rcpts.first().map_or("", String::as_str);
                    io.reply(&format!("550 5.1.1 <{first}>: mailbox unknown"));
                    return Step::Go;
                }
            }
        }
        let id = format!("{:012X}", inner.next_id.fetch_add(1, Ordering::Relaxed) + 1);
        bump(&c.messages);
        add(&c.recipients, txn.rcpts.len());
        add(&c.bytes, body.size);
        io.reply(&format!("250 2.0.0 Ok: queued as {id}"));
        inner.keep(ReceivedMail {
            id,
            helo: self.helo.clone().unwrap_or_default(),
            from: txn.from,
            rcpts: txn.rcpts,
            data: body.data,
            tls: self.tls,
            auth_user: self.auth_user.clone(),
        });
        Step::Go
    }

    fn starttls<S>(&mut self, io: &mut Io<S>, arg: &str) -> Step
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        if !arg.is_empty() {
            return self.bad(io, "501 5.5.4 Syntax: STARTTLS");
        }
        if self.inner.tls.is_none() {
            return self.bad(io, "502 5.5.1 STARTTLS not available");
        }
        if self.tls {
            return self.bad(io, "503 5.5.1 TLS already active");
        }
        io.reply("220 2.0.0 Ready to start TLS");
        Step::StartTls
    }

    async fn auth<S>(&mut self, io: &mut Io<S>, arg: &str) -> Step
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        if self.tls_missing() {
            return self.bad(io, "530 5.7.0 Must issue a STARTTLS command first");
        }
        if self.helo.is_none() {
            return self.bad(io, "503 5.5.1 Send EHLO first");
        }
        if self.auth_user.is_some() {
            return self.bad(io, "503 5.5.1 Already authenticated");
        }
        if self.txn.is_some() {
            return self.bad(io, "503 5.5.1 AUTH not allowed during a mail transaction");
        }
        let mut words = arg.split_ascii_whitespace();
        let mechanism = words.next().unwrap_or("").to_ascii_uppercase();
        let initial = words.next();
        if words.next().is_some() {
            return self.bad(io, "501 5.5.4 Syntax: AUTH mechanism [initial-response]");
        }
        let credentials = match mechanism.as_str() {
            "PLAIN" => {
                let response = match initial {
                    Some(r) => Ok(r.to_string()),
                    None => challenge(io, "334 ").await,
                };
                match response {
                    Ok(r) => decode_plain(&r),
                    Err(e) => Err(e),
                }
            }
            "LOGIN" => {
                let user = match initial {
                    Some(r) => Ok(r.to_string()),
                    None => challenge(io, LOGIN_USER).await,
                };
                match user.and_then(|u| decode(&u)) {
                    Ok(user) => match challenge(io, LOGIN_PASS).await {
                        Ok(p) => decode(&p).map(|pass| (user, pass)),
                        Err(e) => Err(e),
                    },
                    Err(e) => Err(e),
                }
            }
            "" => return self.bad(io, "501 5.5.4 Syntax: AUTH mechanism"),
            _ => return self.bad(io, "504 5.5.4 Unrecognized authentication type"),
        };
        let inner = self.inner;
        let c = &inner.counters;
        let (user, pass) = match credentials {
            Ok(up) => up,
            Err(AuthError::End(end)) => {
                self.end(io, end).await;
                return Step::Ended;
            }
            Err(AuthError::Cancelled) => {
                bump(&c.auth_failed);
                return self.bad(io, "501 5.7.0 Authentication cancelled");
            }
            Err(AuthError::Malformed) => {
                bump(&c.auth_failed);
                return self.bad(io, "501 5.5.2 Cannot decode the authentication response");
            }
        };
        let ok = match &self.cfg().require_auth {
            Some((u, p)) => user == *u && pass == *p,
            None => true,
        };
        if ok {
            bump(&c.auth_ok);
            self.auth_user = Some(user);
            io.reply("235 2.7.0 Authentication successful");
            Step::Go
        } else {
            bump(&c.auth_failed);
            io.reply("535 5.7.8 Authentication credentials invalid");
            // Counted towards the error limit, so guessing is bounded per connection.
            self.errors += 1;
            if self.errors >= MAX_ERRORS {
                io.reply("421 4.7.0 Too many errors, closing connection");
                return Step::Close;
            }
            Step::Go
        }
    }
}

enum AuthError {
    End(End),
    Cancelled,
    Malformed,
}

/// Send a `334` challenge and read the client's response line.
async fn challenge<S>(io: &mut Io<S>, prompt: &str) -> Result<String, AuthError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    io.reply(prompt);
    let line = io.read_line().await.map_err(AuthError::End)?;
    let line = line.ok_or(AuthError::Malformed)?;
    let line = String::from_utf8(line).map_err(|_| AuthError::Malformed)?;
    if line.trim() == "*" {
        return Err(AuthError::Cancelled);
    }
    Ok(line)
}

fn decode(b64: &str) -> Result<String, AuthError> {
    let b64 = b64.trim();
    // RFC 4954 §4: `=` is an empty initial response.
    let bytes = if b64 == "=" {
        Vec::new()
    } else {
        BASE64.decode(b64).map_err(|_| AuthError::Malformed)?
    };
    String::from_utf8(bytes).map_err(|_| AuthError::Malformed)
}

/// `[authzid] NUL authcid NUL passwd` (RFC 4616).
fn decode_plain(b64: &str) -> Result<(String, String), AuthError> {
    let text = decode(b64)?;
    let mut parts = text.split('\0');
    let (Some(authzid), Some(user), Some(pass), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed);
    };
    if user.is_empty() || !(authzid.is_empty() || authzid == user) {
        return Err(AuthError::Malformed);
    }
    Ok((user.to_string(), pass.to_string()))
}

fn strip_prefix_ci<'s>(s: &'s str, prefix: &str) -> Option<&'s str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// `<address> params` (a space after the colon and a missing `<>` tolerated, a
/// source route dropped) into the address and the parameters.
fn parse_path(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start();
    if let Some(rest) = s.strip_prefix('<') {
        let end = rest.find('>')?;
        let (mut addr, params) = (&rest[..end], &rest[end + 1..]);
        if !(params.is_empty() || params.starts_with(' ')) {
            return None;
        }
        if addr.starts_with('@') {
            addr = addr.split_once(':')?.1;
        }
        Some((addr, params.trim()))
    } else {
        let (addr, params) = s.split_once(' ').unwrap_or((s, ""));
        if addr.is_empty() || addr.contains(['<', '>']) {
            return None;
        }
        Some((addr, params.trim()))
    }
}

/// `local@domain` without spaces, controls or brackets (quoted local parts
/// with spaces are not supported).
fn valid_mailbox(a: &str) -> bool {
    a.len() <= 320
        && !a
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>'))
        && matches!(a.rsplit_once('@'), Some((l, d)) if !l.is_empty() && !d.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, BufReader};

    const WAIT: Duration = Duration::from_secs(5);
    const LOCAL: &str = "127.0.0.1:0";

    type TlsStream = tokio_rustls::client::TlsStream<TcpStream>;

    async fn sink(cfg: SinkConfig) -> (SmtpSink, CancellationToken) {
        let stop = CancellationToken::new();
        let s = SmtpSink::start(LOCAL.parse().unwrap(), cfg, stop.clone())
            .await
            .unwrap();
        (s, stop)
    }

    /// A raw SMTP client: write bytes, read (multi-line) replies.
    struct Client<S> {
        r: BufReader<S>,
    }

    impl Client<TcpStream> {
        async fn connect(sink: &SmtpSink) -> Self {
            let tcp = TcpStream::connect(sink.local_addr()).await.unwrap();
            let mut c = Client {
                r: BufReader::new(tcp),
            };
            let (code, text) = c.reply().await;
            assert_eq!(code, 220, "{text}");
            c
        }

        /// STARTTLS, then a TLS handshake trusting only the sink's certificate.
        async fn starttls(mut self, sink: &SmtpSink) -> Client<TlsStream> {
            assert_eq!(self.cmd("STARTTLS").await.0, 220);
            self.handshake(sink, "localhost").await
        }

        /// A TLS handshake (after the `220`) for `name`, trusting only the
        /// sink's certificate.
        async fn handshake(self, sink: &SmtpSink, name: &str) -> Client<TlsStream> {
            assert!(self.r.buffer().is_empty());
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(rustls::pki_types::CertificateDer::from(
                    sink.certificate_der().unwrap().to_vec(),
                ))
                .unwrap();
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
            let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
            let name = rustls::pki_types::ServerName::try_from(name.to_string()).unwrap();
            let tls = timeout(WAIT, connector.connect(name, self.r.into_inner()))
                .await
                .unwrap()
                .unwrap();
            Client {
                r: BufReader::new(tls),
            }
        }
    }

    impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
        async fn send(&mut self, bytes: impl AsRef<[u8]>) {
            self.r.get_mut().write_all(bytes.as_ref()).await.unwrap();
            self.r.get_mut().flush().await.unwrap();
        }

        /// One reply: its code and its lines' text joined with `\n`.
        async fn reply(&mut self) -> (u16, String) {
            let mut text = Vec::new();
            loop {
                let mut line = String::new();
                let n = timeout(WAIT, self.r.read_line(&mut line))
                    .await
                    .expect("reply timed out")
                    .unwrap();
                assert!(n > 0, "connection closed; got so far: {text:?}");
                assert!(line.ends_with("\r\n"), "{line:?}");
                let line = line.trim_end();
                assert!(line.len() >= 3, "{line:?}");
                let code: u16 = line[..3].parse().unwrap();
                text.push(line.get(4..).unwrap_or("").to_string());
                if line.as_bytes().get(3) != Some(&b'-') {
                    return (code, text.join("\n"));
                }
            }
        }

        async fn cmd(&mut self, line: &str) -> (u16, String) {
            self.send(format!("{line}\r\n")).await;
            self.reply().await
        }

        async fn code(&mut self, line: &str) -> u16 {
            self.cmd(line).await.0
        }

        /// Reads until the server closes; true if it did within the wait.
        async fn closed(&mut self) -> bool {
            let mut rest = Vec::new();
            matches!(
                timeout(WAIT, self.r.read_to_end(&mut rest)).await,
                Ok(Ok(_)) | Ok(Err(_))
            )
        }

        /// A whole transaction; the DATA answer's code.
        async fn send_mail(&mut self, from: &str, to: &[&str], body: &str) -> u16 {
            assert_eq!(self.code(&format!("MAIL FROM:<{from}>")).await, 250);
            for t in to {
                assert_eq!(self.code(&format!("RCPT TO:<{t}>")).await, 250);
            }
            assert_eq!(self.code("DATA").await, 354);
            self.send(body).await;
            self.cmd(".").await.0
        }
    }

    #[tokio::test]
    async fn plain_session_delivers_unstuffs_and_counts() {
        let (sink, _stop) = sink(SinkConfig::default()).await;
        let mut c = Client::connect(&sink).await;
        let (code, ehlo) = c.cmd("EHLO client.example").await;
        assert_eq!(code, 250);
        for ext in [
            "PIPELINING",
            "8BITMIME",
            "SMTPUTF8",
            "SIZE 10485760",
            "AUTH PLAIN LOGIN",
        ] {
            assert!(ehlo.lines().any(|l| l == ext), "{ext} missing: {ehlo}");
        }
        assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
        assert_eq!(
            c.code("MAIL FROM:<noreply@goniec.dev> BODY=8BITMIME SIZE=100")
                .await,
            250
        );
        assert_eq!(c.code("RCPT TO:<jan@example.com>").await, 250);
        assert_eq!(c.code("rcpt to: <anna@example.com>").await, 250);
        assert_eq!(c.code("DATA").await, 354);
        c.send("Subject: hi\r\n\r\n..leading dot\r\n..\r\n...\r\nend.\r\n")
            .await;
        let (code, text) = c.cmd(".").await;
        assert_eq!(code, 250, "{text}");
        assert!(text.starts_with("2.0.0 Ok: queued as "), "{text}");
        assert_eq!(c.code("QUIT").await, 221);
        assert!(c.closed().await);

        let mails = sink.messages();
        assert_eq!(mails.len(), 1);
        let m = &mails[0];
        assert_eq!(m.helo, "client.example");
        assert_eq!(m.from, "noreply@goniec.dev");
        assert_eq!(m.rcpts, ["jan@example.com", "anna@example.com"]);
        let body = b"Subject: hi\r\n\r\n.leading dot\r\n.\r\n..\r\nend.\r\n";
        assert_eq!(m.data, body);
        assert!(!m.tls);
        assert_eq!(m.auth_user, None);
        assert!(text.ends_with(&m.id));
        let s = sink.stats();
        assert_eq!(s.connections, 1);
        assert_eq!(s.messages, 1);
        assert_eq!(s.recipients, 2);
        assert_eq!(s.bytes, body.len() as u64);
        assert_eq!(s.bad_commands, 0);
    }

    #[tokio::test]
    async fn pipelined_commands_are_answered_in_order() {
        let (sink, _stop) = sink(SinkConfig::default()).await;
        let mut c = Client::connect(&sink).await;
        // lettre's shape: MAIL, RCPTs and DATA in one write, then the body.
        c.send(
            "EHLO pipe\r\nMAIL FROM:<>\r\nRCPT TO:<a@x.pl>\r\nRCPT TO:<bounce-7@x.pl>\r\n\
             RCPT TO:<b@x.pl>\r\nDATA\r\n",
        )
        .await;
        let mut codes = Vec::new();
        for _ in 0..6 {
            codes.push(c.reply().await.0);
        }
        assert_eq!(codes, [250, 250, 250, 550, 250, 354]);
        // The body, the end and a whole second transaction and QUIT in one write.
        c.send(
            "one\r\n.\r\nRSET\r\nMAIL FROM:<s@x.pl>\r\nRCPT TO:<c@x.pl>\r\nDATA\r\ntwo\r\n.\r\n\
             NOOP\r\nQUIT\r\n",
        )
        .await;
        let mut codes = Vec::new();
        for _ in 0..8 {
            codes.push(c.reply().await.0);
        }
        assert_eq!(codes, [250, 250, 250, 250, 354, 250, 250, 221]);
        assert!(c.closed().await);
        let mails = sink.messages();
        assert_eq!(mails.len(), 2);
        assert_eq!(mails[0].from, "");
        assert_eq!(mails[0].rcpts, ["a@x.pl", "b@x.pl"]);
        assert_eq!(mails[0].data, b"one\r\n");
        assert_eq!(mails[1].rcpts, ["c@x.pl"]);
        assert_eq!(mails[1].data, b"two\r\n");
        let s = sink.stats();
        assert_eq!(
            (s.messages, s.recipients, s.perm_failed, s.bounced),
            (2, 3, 1, 1)
        );
    }

    #[tokio::test]
    async fn pipelined_data_after_rejected_recipients_is_refused() {
        let (sink, _stop) = sink(SinkConfig::default()).await;
        let mut c = Client::connect(&sink).await;
        c.send("HELO x\r\nMAIL FROM:<a@x.pl>\r\nRCPT TO:<bounce@x.pl>\r\nDATA\r\nNOOP\r\n")
            .await;
        let mut codes = Vec::new();
        for _ in 0..5 {
            codes.push(c.reply().await.0);
        }
        assert_eq!(codes, [250, 250, 550, 554, 250]);
        // The transaction is still open: a good recipient can follow.
        assert_eq!(c.code("RCPT TO:<ok@x.pl>").await, 250);
        assert_eq!(c.code("DATA").await, 354);
        assert_eq!(c.cmd("hello\r\n.").await.0, 250);
        assert_eq!(sink.stats().messages, 1);
    }

    #[tokio::test]
    async fn auth_plain_and_login_good_and_bad() {
        let cfg = SinkConfig {
            require_auth: Some(("goniec".into(), "s3cret".into())),
            ..SinkConfig::default()
        };
        let (sink, _stop) = sink(cfg).await;
        let plain = |u: &str, p: &str| BASE64.encode(format!("\0{u}\0{p}"));

        let mut c = Client::connect(&sink).await;
        assert_eq!(c.code("AUTH PLAIN").await, 503, "AUTH before EHLO");
        assert_eq!(c.code("EHLO me").await, 250);
        let (code, text) = c.cmd("MAIL FROM:<a@x.pl>").await;
        assert_eq!(
            (code, text.as_str()),
            (530, "5.7.0 Authentication required")
        );
        assert_eq!(
            c.code(&format!("AUTH PLAIN {}", plain("goniec", "wrong")))
                .await,
            535
        );
        assert_eq!(c.code("AUTH PLAIN !!notbase64").await, 501);
        assert_eq!(c.code("AUTH CRAM-MD5").await, 504);
        // Without an initial response: an empty challenge first; `*` cancels.
        assert_eq!(c.cmd("AUTH PLAIN").await, (334, String::new()));
        assert_eq!(c.code("*").await, 501);
        assert_eq!(c.cmd("AUTH PLAIN").await, (334, String::new()));
        assert_eq!(c.code(&plain("goniec", "s3cret")).await, 235);
        assert_eq!(
            c.code(&format!("AUTH PLAIN {}", plain("goniec", "s3cret")))
                .await,
            503
        );
        assert_eq!(c.send_mail("a@x.pl", &["b@x.pl"], "hi\r\n").await, 250);
        assert_eq!(sink.messages()[0].auth_user.as_deref(), Some("goniec"));

        let mut c = Client::connect(&sink).await;
        assert_eq!(c.code("EHLO me").await, 250);
        let (code, prompt) = c.cmd("AUTH LOGIN").await;
        assert_eq!((code, prompt.as_str()), (334, "VXNlcm5hbWU6"));
        let (code, prompt) = c.cmd(&BASE64.encode("goniec")).await;
        assert_eq!((code, prompt.as_str()), (334, "UGFzc3dvcmQ6"));
        assert_eq!(c.code(&BASE64.encode("nope")).await, 535);
        // With the user as initial response.
        let (code, prompt) = c
            .cmd(&format!("AUTH LOGIN {}", BASE64.encode("goniec")))
            .await;
        assert_eq!((code, prompt.as_str()), (334, "UGFzc3dvcmQ6"));
        assert_eq!(c.code(&BASE64.encode("s3cret")).await, 235);
        assert_eq!(c.send_mail("a@x.pl", &["b@x.pl"], "hi\r\n").await, 250);

        let s = sink.stats();
        assert_eq!(s.auth_ok, 2);
        assert_eq!(s.auth_failed, 4, "{s:?}");
        assert_eq!(s.messages, 2);
    }

    #[tokio::test]
    async fn open_sink_takes_any_credentials() {
        let (sink, _stop) = sink(SinkConfig::default()).await;
        let mut c = Client::connect(&sink).await;
        assert_eq!(c.code("EHLO me").await, 250);
        let creds = BASE64.encode("\0anyone\0anything");
        assert_eq!(c.code(&format!("AUTH PLAIN {creds}")).await, 235);
        assert_eq!(sink.stats().auth_ok, 1);
    }

    #[tokio::test]
    async fn starttls_with_self_signed_certificate() {
        let cfg = SinkConfig {
            require_starttls: true,
            require_auth: Some(("u".into(), "p".into())),
            ..SinkConfig::default()
        };
        let (sink, _stop) = sink(cfg).await;
        let mut c = Client::connect(&sink).await;
        let (_, ehlo) = c.cmd("EHLO me").await;
        assert!(ehlo.lines().any(|l| l == "STARTTLS"), "{ehlo}");
        assert!(!ehlo.contains("AUTH"), "no AUTH before TLS: {ehlo}");
        assert_eq!(c.cmd("MAIL FROM:<a@x.pl>").await.0, 530);
        assert_eq!(c.code("AUTH PLAIN AHUAcA==").await, 530);
        assert_eq!(c.code("STARTTLS now").await, 501);
        let mut c = c.starttls(&sink).await;
        assert_eq!(
            c.code("MAIL FROM:<a@x.pl>").await,
            503,
            "EHLO again after TLS"
        );
        let (_, ehlo) = c.cmd("EHLO me").await;
        assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
        assert!(ehlo.lines().any(|l| l == "AUTH PLAIN LOGIN"), "{ehlo}");
        assert_eq!(c.code("STARTTLS").await, 503);
        assert_eq!(c.code("AUTH PLAIN AHUAcA==").await, 235);
        assert_eq!(c.send_mail("a@x.pl", &["b@x.pl"], "secret\r\n").await, 250);
        assert_eq!(c.code("QUIT").await, 221);
        let m = &sink.messages()[0];
        assert!(m.tls);
        assert_eq!(m.data, b"secret\r\n");
        let s = sink.stats();
        assert_eq!(
            (s.starttls, s.auth_ok, s.messages, s.tls_failed),
            (1, 1, 1, 0)
        );
    }

    #[tokio::test]
    async fn starttls_drops_pipelined_plaintext() {
        let cfg = SinkConfig {
            starttls: true,
            ..SinkConfig::default()
        };
        let (sink, _stop) = sink(cfg).await;
        let mut c = Client::connect(&sink).await;
        assert_eq!(c.code("EHLO me").await, 250);
        // Mail is allowed in plain text when TLS is only offered.
        assert_eq!(c.send_mail("a@x.pl", &["b@x.pl"], "plain\r\n").await, 250);
        // A command injected after STARTTLS must not survive the handshake.
        c.send("STARTTLS\r\nMAIL FROM:<evil@x.pl>\r\n").await;
        assert_eq!(c.reply().await.0, 220);
        let mut c = c.handshake(&sink, "127.0.0.1").await;
        assert_eq!(c.code("EHLO me").await, 250);
        assert_eq!(
            c.code("RCPT TO:<b@x.pl>").await,
            503,
            "the injected MAIL was dropped"
        );
        assert_eq!(sink.stats().starttls, 1);
    }

    #[tokio::test]
    async fn failed_tls_handshake_is_counted() {
        let cfg = SinkConfig {
            starttls: true,
            ..SinkConfig::default()
        };
        let (sink, _stop) = sink(cfg).await;
        let mut c = Client::connect(&sink).await;
        assert_eq!(c.code("EHLO me").await, 250);
        assert_eq!(c.code("STARTTLS").await, 220);
        c.send("this is not a TLS ClientHello\r\n").await;
        assert!(c.closed().await);
        let deadline = tokio::time::Instant::now() + WAIT;
        while sink.stats().tls_failed == 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(sink.stats().tls_failed, 1);
    }

    #[tokio::test]
    async fn temp_and_perm_failure_shares_at_data() {
        let cfg = SinkConfig {
            temp_fail_every: 2,
            perm_fail_every: 3,
            ..SinkConfig::default()
        };
        let (sink, _stop) = sink(cfg).await;
        let mut c = Client::connect(&sink).await;
        assert_eq!(c.code("EHLO me").await, 250);
        let mut codes = Vec::new();
        let mut texts = Vec::new();
        for _ in 0..6 {
            assert_eq!(c.code("MAIL FROM:<a@x.pl>").await, 250);
            assert_eq!(c.code("RCPT TO:<jan@x.pl>").await, 250);
            assert_eq!(c.code("DATA").await, 354);
            let (code, text) = c.cmd("x\r\n.").await;
            codes.push(code);
            texts.push(text);
        }
        // 1 ok, 2 temp, 3 perm, 4 temp, 5 ok, 6 temp (temp wins over perm).
        assert_eq!(codes, [250, 451, 550, 451, 250, 451]);
        assert!(texts[1].starts_with("4.3.0 "), "{}", texts[1]);
        assert_eq!(texts[2], "5.1.1 <jan@x.pl>: mailbox unknown");
        let s = sink.stats();
        assert_eq!((s.messages, s.temp_failed, s.perm_failed), (2, 3, 1));
        assert_eq!(sink.messages().len(), 2);
    }

    #[tokio::test]
    async fn failure_shares_at_rcpt_and_bounce_prefixes() {
        let cfg = SinkConfig {
            temp_fail_every: 3,
            perm_fail_every: 4,
            fail_at: FailAt::Rcpt,
            bounce_prefixes: vec!["bounce".into(), "nobody".into()],
            ..SinkConfig::default()
        };
        let (sink, _stop) = sink(cfg).await;
        let mut c = Client::connect(&sink).await;
        assert_eq!(c.code("EHLO me").await, 250);
        assert_eq!(c.code("MAIL FROM:<a@x.pl>").await, 250);
        let mut codes = Vec::new();
        for i in 1..=6 {
            codes.push(c.code(&format!("RCPT TO:<r{i}@x.pl>")).await);
        }
        // Numbered recipients: 3 temp, 4 perm, 6 temp.
        assert_eq!(codes, [250, 250, 451, 550, 250, 451]);
        // Bounce prefixes are not numbered and always fail.
        let (code, text) = c.cmd("RCPT TO:<BOUNCE.me@x.pl>").await;
        assert_eq!(
            (code, text.as_str()),
            (550, "5.1.1 <BOUNCE.me@x.pl>: mailbox unknown")
        );
        assert_eq!(c.code("RCPT TO:<nobody@x.pl>").await, 550);
        assert_eq!(c.code("RCPT TO:<r7@x.pl>").await, 250);
        assert_eq!(c.code("DATA").await, 354);
        assert_eq!(c.cmd("x\r\n.").await.0, 250, "no failure share at DATA");
        assert_eq!(
            sink.messages()[0].rcpts,
            ["r1@x.pl", "r2@x.pl", "r5@x.pl", "r7@x.pl"]
        );
        let s = sink.stats();
        assert_eq!((s.temp_failed, s.perm_failed, s.bounced), (2, 3, 2));
        assert_eq!(s.recipients, 4);
    }

    #[tokio::test]
    async fn size_limit_at_mail_and_at_data() {
        let cfg = SinkConfig {
            max_size: 100,
            ..SinkConfig::default()
        };
        let (sink, _stop) = sink(cfg).await;
        let mut c = Client::connect(&sink).await;
        let (_, ehlo) = c.cmd("EHLO me").await;
        assert!(ehlo.lines().any(|l| l == "SIZE 100"), "{ehlo}");
        assert_eq!(c.code("MAIL FROM:<a@x.pl> SIZE=101").await, 552);
        assert_eq!(c.code("MAIL FROM:<a@x.pl> SIZE=abc").await, 501);
        assert_eq!(c.code("MAIL FROM:<a@x.pl> SIZE=100").await, 250);
        assert_eq!(c.code("RCPT TO:<b@x.pl>").await, 250);
        assert_eq!(c.code("DATA").await, 354);
        // 60 lines of 10: well over 100, and a long line of 200 KiB without LF.
        for _ in 0..60 {
            c.send("123456789\n").await;
        }
        c.send(vec![b'z'; 200 * 1024]).await;
        let (code, text) = c.cmd("\r\n.").await;
        assert_eq!(
            (code, text.as_str()),
            (552, "5.3.4 Message size exceeds fixed maximum message size")
        );
        assert_eq!(c.code("NOOP").await, 250, "the session goes on");
        // Exactly 100 octets pass.
        let body = format!("{}\r\n", "a".repeat(98));
        assert_eq!(c.send_mail("a@x.pl", &["b@x.pl"], &body).await, 250);
        let s = sink.stats();
        assert_eq!((s.too_big, s.messages, s.bytes), (2, 1, 100));
    }

    #[tokio::test]
    async fn overlong_command_lines_get_500_and_the_session_goes_on() {
        let (sink, _stop) = sink(SinkConfig::default()).await;
        let mut c = Client::connect(&sink).await;
        let (code, text) = c.cmd(&"A".repeat(5000)).await;
        assert_eq!((code, text.as_str()), (500, "5.5.6 Line too long"));
        // A long line arriving in pieces, then 998 + CRLF = 1000 octets (allowed).
        for _ in 0..40 {
            c.send(vec![b'B'; 1000]).await;
        }
        assert_eq!(c.cmd("").await.0, 500);
        let noop = format!("NOOP {}", "x".repeat(998 - 5));
        assert_eq!(c.code(&noop).await, 250);
        let noop = format!("NOOP {}", "x".repeat(999 - 5));
        assert_eq!(c.code(&noop).await, 500);
        assert_eq!(c.code("EHLO me").await, 250);
        assert_eq!(sink.stats().long_lines, 3);
    }

    #[tokio::test]
    async fn garbage_never_kills_the_sink() {
        let (sink, _stop) = sink(SinkConfig::default()).await;
        // Binary garbage with line ends: answered, then the connection is closed
        // after MAX_ERRORS.
        let mut c = Client::connect(&sink).await;
        let mut junk = Vec::new();
        let mut x: u32 = 0x1234_5678;
        for i in 0..4000u32 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            junk.push((x >> 24) as u8);
            if i % 37 == 0 {
                junk.extend_from_slice(b"\r\n");
            }
        }
        c.send(&junk).await;
        let mut codes = Vec::new();
        loop {
            let (code, _) = c.reply().await;
            codes.push(code);
            if code == 421 {
                break;
            }
        }
        assert!(
            codes[..codes.len() - 1]
                .iter()
                .all(|&c| (500..=555).contains(&c)),
            "{codes:?}"
        );
        assert!(c.closed().await);

        // Garbage without any line end, then a hang-up; an HTTP request; bytes
        // before the greeting; an abrupt close mid-DATA.
        let mut raw = TcpStream::connect(sink.local_addr()).await.unwrap();
        raw.write_all(&[0xff; 50_000]).await.unwrap();
        drop(raw);
        let mut c = Client::connect(&sink).await;
        assert_eq!(c.code("GET / HTTP/1.1").await, 500);
        assert_eq!(c.code("\0\0\0").await, 500);
        assert_eq!(c.code("MAIL FROM:<\u{104}@x.pl>").await, 503);
        assert_eq!(c.code("EHLO \u{17c}\u{f3}\u{142}w").await, 250);
        c.send(b"MAIL FROM:<\xff\xfe@x.pl>\r\n").await;
        assert_eq!(c.reply().await.0, 501);
        assert_eq!(c.code("MAIL FROM:<a@x.pl>").await, 250);
        assert_eq!(c.code("RCPT TO:<b@x.pl>").await, 250);
        assert_eq!(c.code("DATA").await, 354);
        c.send("half a message\r\n").await;
        drop(c);

        let mut c = Client::connect(&sink).await;
        assert_eq!(c.code("EHLO alive").await, 250);
        assert_eq!(
            c.send_mail("a@x.pl", &["b@x.pl"], "still here\r\n").await,
            250
        );
        let s = sink.stats();
        assert_eq!(s.messages, 1);
        assert!(s.bad_commands >= MAX_ERRORS as u64 + 3, "{s:?}");
    }

    #[tokio::test]
    async fn commands_out_of_sequence_and_unknown() {
        let (sink, _stop) = sink(SinkConfig::default()).await;
        let mut c = Client::connect(&sink).await;
        assert_eq!(c.code("MAIL FROM:<a@x.pl>").await, 503, "before EHLO");
        assert_eq!(c.code("EHLO").await, 501);
        assert_eq!(c.code("HELO me").await, 250);
        assert_eq!(c.code("RCPT TO:<b@x.pl>").await, 503);
        assert_eq!(c.code("DATA").await, 503);
        assert_eq!(c.code("MAIL TO:<a@x.pl>").await, 501);
        assert_eq!(c.code("MAIL FROM:<a@x.pl> RET=FULL").await, 555);
        assert_eq!(c.code("MAIL FROM:<a@x.pl>").await, 250);
        assert_eq!(c.code("MAIL FROM:<a@x.pl>").await, 503, "nested");
        assert_eq!(c.code("RCPT TO:<>").await, 501);
        assert_eq!(c.code("RCPT TO:<no-domain>").await, 501);
        assert_eq!(c.code("RCPT TO:<Postmaster>").await, 250);
        assert_eq!(c.code("RCPT TO:<@relay.pl:b@x.pl>").await, 250);
        assert_eq!(c.code("RSET").await, 250);
        assert_eq!(c.code("DATA").await, 503, "RSET ended the transaction");
        assert_eq!(c.cmd("VRFY jan").await.0, 252);
        assert_eq!(c.code("EXPN list").await, 502);
        assert_eq!(c.code("BDAT 10 LAST").await, 502);
        assert_eq!(c.code("STARTTLS").await, 502, "no TLS configured");
        assert_eq!(c.code("FROB").await, 500);
        assert_eq!(c.code("NOOP").await, 250);
        assert_eq!(c.code("HELP").await, 214);
        assert_eq!(c.code("QUIT").await, 221);
        assert_eq!(sink.stats().bad_commands, 14);
    }

    #[tokio::test]
    async fn too_many_recipients() {
        let cfg = SinkConfig {
            max_recipients: 2,
            ..SinkConfig::default()
        };
        let (sink, _stop) = sink(cfg).await;
        let mut c = Client::connect(&sink).await;
        assert_eq!(c.code("EHLO me").await, 250);
        assert_eq!(c.code("MAIL FROM:<a@x.pl>").await, 250);
        assert_eq!(c.code("RCPT TO:<b@x.pl>").await, 250);
        assert_eq!(c.code("RCPT TO:<c@x.pl>").await, 250);
        assert_eq!(c.code("RCPT TO:<d@x.pl>").await, 452);
    }

    #[tokio::test]
    async fn keeps_only_the_last_messages() {
        let cfg = SinkConfig {
            keep: 2,
            ..SinkConfig::default()
        };
        let (sink, _stop) = sink(cfg).await;
        let mut c = Client::connect(&sink).await;
        assert_eq!(c.code("EHLO me").await, 250);
        for i in 1..=3 {
            assert_eq!(
                c.send_mail("a@x.pl", &["b@x.pl"], &format!("m{i}\r\n"))
                    .await,
                250
            );
        }
        let data: Vec<_> = sink.messages().into_iter().map(|m| m.data).collect();
        assert_eq!(data, [b"m2\r\n".to_vec(), b"m3\r\n".to_vec()]);
        sink.clear_messages();
        assert!(sink.messages().is_empty());
        assert_eq!(sink.stats().messages, 3);
    }

    #[tokio::test]
    async fn idle_timeout_closes_with_421() {
        let cfg = SinkConfig {
            idle_timeout: Duration::from_millis(200),
            ..SinkConfig::default()
        };
        let (sink, _stop) = sink(cfg).await;
        let mut c = Client::connect(&sink).await;
        let (code, text) = c.reply().await;
        assert_eq!(code, 421, "{text}");
        assert!(text.starts_with("4.4.2 "), "{text}");
        assert!(c.closed().await);
        assert_eq!(sink.stats().timeouts, 1);
    }

    #[tokio::test]
    async fn connection_cap_refuses_with_421() {
        let cfg = SinkConfig {
            max_connections: 1,
            ..SinkConfig::default()
        };
        let (sink, _stop) = sink(cfg).await;
        let mut first = Client::connect(&sink).await;
        let tcp = TcpStream::connect(sink.local_addr()).await.unwrap();
        let mut second = Client {
            r: BufReader::new(tcp),
        };
        assert_eq!(second.reply().await.0, 421);
        assert!(second.closed().await);
        assert_eq!(first.code("NOOP").await, 250);
        let s = sink.stats();
        assert_eq!((s.refused, s.sessions, s.connections), (1, 1, 1));
        assert_eq!(first.code("QUIT").await, 221);
        assert!(first.closed().await);
        // The slot is free again.
        let deadline = tokio::time::Instant::now() + WAIT;
        while sink.stats().sessions > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut third = Client::connect(&sink).await;
        assert_eq!(third.code("NOOP").await, 250);
    }

    #[tokio::test]
    async fn shutdown_says_421_and_stops_listening() {
        let (sink, stop) = sink(SinkConfig::default()).await;
        let mut c = Client::connect(&sink).await;
        assert_eq!(c.code("EHLO me").await, 250);
        stop.cancel();
        let (code, text) = c.reply().await;
        assert_eq!(code, 421, "{text}");
        assert!(c.closed().await);
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match TcpStream::connect(sink.local_addr()).await {
                Err(_) => break,
                Ok(_) if tokio::time::Instant::now() > deadline => panic!("still listening"),
                Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    #[test]
    fn paths_and_mailboxes_parse() {
        assert_eq!(parse_path("<a@x.pl>"), Some(("a@x.pl", "")));
        assert_eq!(parse_path(" <a@x.pl> SIZE=1"), Some(("a@x.pl", "SIZE=1")));
        assert_eq!(parse_path("<>"), Some(("", "")));
        assert_eq!(parse_path("a@x.pl"), Some(("a@x.pl", "")));
        assert_eq!(parse_path("<@r1,@r2:a@x.pl>"), Some(("a@x.pl", "")));
        assert_eq!(parse_path("<a@x.pl"), None);
        assert_eq!(parse_path("<a@x.pl>x"), None);
        assert_eq!(parse_path(""), None);
        assert!(valid_mailbox("jan.kowalski+tag@example.com"));
        assert!(valid_mailbox("żółw@przykład.pl"));
        assert!(!valid_mailbox("a b@x.pl"));
        assert!(!valid_mailbox("@x.pl"));
        assert!(!valid_mailbox("a@"));
        assert_eq!(strip_prefix_ci("from:<a>", "FROM:"), Some("<a>"));
        assert_eq!(strip_prefix_ci("fr", "FROM:"), None);
        assert_eq!(strip_prefix_ci("żółw", "FROM:"), None);
    }
}
