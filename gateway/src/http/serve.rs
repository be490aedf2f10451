//! Serving the API over HTTP/1.1, with what `axum::serve` lacks against slow or
//! numerous clients:
//! * a cap on open connections (`server.max_connections`): one over it is answered
//!   503 with `Retry-After` and closed without being read;
//! * a deadline for request headers (`server.header_timeout`), run by hyper's timer
//!   from the moment a connection opens or its previous answer is sent: a client
//!   that has sent part of a request head by then is answered 408, an idle one is
//!   just closed;
//! * a graceful drain: once `stop` is cancelled no connection is accepted, and the
//!   open ones finish the request in hand and close.
//!
//! Body limits, the body deadline and the budget of buffered bytes are enforced
//! where bodies are read ([`super::limits`]), after authentication.

use goniec_core::Problem;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use prometheus::{IntCounter, IntGauge, Registry};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::error::ApiError;
use super::limits::Limits;
use crate::app::App;

/// How long a refused connection stays open for its client to read the 503.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// Most refused connections lingering at once; past this they are closed at once,
/// so a flood of connections cannot make the refusals themselves costly.
const MAX_LINGERING: usize = 256;

/// Longest time spent writing a canned answer to a client that does not read it.
const CANNED_WRITE: Duration = Duration::from_secs(1);

/// Connection-level metrics, registered with the app's others.
#[derive(Clone)]
struct ConnMetrics {
    open: IntGauge,
    refused: IntCounter,
    header_timeouts: IntCounter,
    buffered: IntGauge,
}

impl ConnMetrics {
    fn register(r: &Registry) -> ConnMetrics {
        fn reg<M: prometheus::core::Collector + Clone + 'static>(r: &Registry, m: M) -> M {
            // Only a second server on the same app could collide; it then serves
            // with metrics that are not exported rather than not at all.
            if let Err(e) = r.register(Box::new(m.clone())) {
                tracing::warn!(error = %e, "HTTP connection metric not registered.");
            }
            m
        }
        let gauge = |name: &str, help: &str| reg(r, IntGauge::new(name, help).expect("valid"));
        let counter = |name: &str, help: &str| reg(r, IntCounter::new(name, help).expect("valid"));
        ConnMetrics {
            open: gauge("goniec_http_connections", "Client connections open now"),
            refused: counter(
                "goniec_http_connections_refused_total",
                "Connections answered 503 because server.max_connections were open",
            ),
            header_timeouts: counter(
                "goniec_http_header_timeouts_total",
                "Connections closed because a request head did not arrive within server.header_timeout",
            ),
            buffered: gauge(
                "goniec_http_buffered_bytes",
                "Request body bytes held in memory now (at most server.max_buffered)",
            ),
        }
    }
}

/// Serve the API on `listener` until `stop` is cancelled, then drain.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    stop: CancellationToken,
) -> io::Result<()> {
    let server = &app.cfg.server;
    let metrics = ConnMetrics::register(&app.metrics.registry);
    let limits = Arc::new(Limits::new(server, metrics.buffered.clone()));
    let router = super::router(app.clone(), limits);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(server.header_timeout);
    let too_many: Arc<[u8]> = canned(
        &ApiError::new(
            Problem::TooManyConnections,
            format!(
                "the gateway serves at most {} connections at once (`server.max_connections`); \
                 nothing was read, retry shortly",
                server.max_connections
            ),
        )
        .retry_after(1),
    );
    let header_timeout: Arc<[u8]> = canned(&ApiError::new(
        Problem::HeaderTimeout,
        format!(
            "the request head did not arrive within {} (`server.header_timeout`)",
            humantime::format_duration(server.header_timeout)
        ),
    ));
    let permits = Arc::new(Semaphore::new(server.max_connections));
    let lingering = Arc::new(Semaphore::new(MAX_LINGERING));
    let tasks = TaskTracker::new();
    let mut warned: Option<Instant> = None;
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e, &stop).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            metrics.refused.inc();
            if warned.is_none_or(|at| at.elapsed() > Duration::from_secs(10)) {
                tracing::warn!(
                    max_connections = server.max_connections,
                    "Connection cap reached: refusing new connections with 503."
                );
                warned = Some(Instant::now());
            }
            refuse(stream, too_many.clone(), &lingering, &tasks);
            continue;
        };
        let slot = Slot::new(permit, metrics.open.clone());
        // The client's address is only read by the tracked-link redirect, and
        // only with data-centre ranges to check it against.
        let router = if app.link_ranges.is_empty() {
            router.clone()
        } else {
            router
                .clone()
                .layer(axum::Extension(axum::extract::ConnectInfo(peer)))
        };
        let conn = Conn {
            http: http.clone(),
            router,
            stop: stop.clone(),
            header_timeout: header_timeout.clone(),
            timeouts: metrics.header_timeouts.clone(),
        };
        tasks.spawn(async move {
            conn.run(stream).await;
            drop(slot);
        });
    }
    // Closing the listener refuses new connections at the socket while the open
    // ones finish (each was told to stop by `stop` as well).
    drop(listener);
    tasks.close();
    tasks.wait().await;
    Ok(())
}

/// One place under `server.max_connections`, counted in the open-connections gauge.
struct Slot {
    _permit: OwnedSemaphorePermit,
    open: IntGauge,
}

impl Slot {
    fn new(permit: OwnedSemaphorePermit, open: IntGauge) -> Slot {
        open.inc();
        Slot {
            _permit: permit,
            open,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.dec();
    }
}

/// What serving one connection needs.
struct Conn {
    http: http1::Builder,
    router: axum::Router,
    stop: CancellationToken,
    header_timeout: Arc<[u8]>,
    timeouts: IntCounter,
}

impl Conn {
    async fn run(self, mut stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let unanswered = AtomicBool::new(false);
        let result = {
            let io = TokioIo::new(Watched {
                io: &mut stream,
                unanswered: &unanswered,
            });
            let conn = self
                .http
                .serve_connection(io, TowerToHyperService::new(self.router));
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => result,
                _ = self.stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            }
        };
        match result {
            Ok(()) => {}
            Err(e) if e.is_timeout() => {
                self.timeouts.inc();
                // Half a request head arrived: say why it is cut off. A connection
                // that was merely idle gets no answer to a question it never asked.
                if unanswered.load(Ordering::Relaxed) {
                    let _ = tokio::time::timeout(CANNED_WRITE, async {
                        stream.write_all(&self.header_timeout).await?;
                        stream.shutdown().await
                    })
                    .await;
                }
            }
            Err(e) => tracing::debug!(error = %e, "HTTP connection ended with an error."),
        }
    }
}

/// A connection's socket that notes whether the client has sent bytes since the
/// gateway last wrote to it: when the header deadline passes, that tells a
/// half-sent request head (answered 408) from an idle connection.
struct Watched<'a> {
    io: &'a mut TcpStream,
    unanswered: &'a AtomicBool,
}

impl AsyncRead for Watched<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut *this.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.unanswered.store(true, Ordering::Relaxed);
        }
        result
    }
}

impl AsyncWrite for Watched<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut *this.io).poll_write(cx, data);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            this.unanswered.store(false, Ordering::Relaxed);
        }
        result
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut *this.io).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            this.unanswered.store(false, Ordering::Relaxed);
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().io).poll_shutdown(cx)
    }
}

/// A complete HTTP/1.1 answer carrying `e` as problem+json, for the places where
/// no request reached the router (so axum cannot answer).
fn canned(e: &ApiError) -> Arc<[u8]> {
    let body = serde_json::to_vec(&e.body()).unwrap_or_default();
    let reason = StatusCode::from_u16(e.status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let mut head = format!(
        "HTTP/1.1 {} {reason}\r\ncontent-type: application/problem+json\r\n\
         content-length: {}\r\nconnection: close\r\n",
        e.status,
        body.len()
    );
    if let Some(s) = e.retry_after {
        head.push_str(&format!("retry-after: {s}\r\n"));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(&body);
    out.into()
}

/// Answer a connection over the cap and close it. Its client may be sending a
/// request already, and closing a socket with unread bytes resets it, which can
/// destroy the answer before the client reads it: so the gateway stops writing,
/// then reads and drops what arrives for up to [`REFUSAL_LINGER`].
fn refuse(stream: TcpStream, answer: Arc<[u8]>, lingering: &Arc<Semaphore>, tasks: &TaskTracker) {
    let Ok(permit) = lingering.clone().try_acquire_owned() else {
        // A fresh socket's send buffer takes the few hundred bytes at once.
        let _ = stream.try_write(&answer);
        return;
    };
    tasks.spawn(async move {
        let mut stream = stream;
        let _ = tokio::time::timeout(REFUSAL_LINGER, async {
            stream.write_all(&answer).await?;
            stream.shutdown().await?;
            let mut sink = [0u8; 1024];
            while stream.read(&mut sink).await? > 0 {}
            Ok::<_, io::Error>(())
        })
        .await;
        drop(permit);
    });
}

/// After a failed accept: a connection the client gave up on is nothing; anything
/// else (out of file descriptors) would fail again at once, so wait a moment.
async fn accept_failed(e: io::Error, stop: &CancellationToken) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "Cannot accept connections; trying again in 1 s.");
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        _ = stop.cancelled() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canned_answers_are_complete_problem_documents() {
        let a = canned(&ApiError::new(Problem::TooManyConnections, "full").retry_after(1));
        let text = std::str::from_utf8(&a).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{head}"
        );
        assert!(head.contains("content-type: application/problem+json"));
        assert!(head.contains("retry-after: 1"));
        assert!(head.contains("connection: close"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["code"], "too-many-connections");
        assert_eq!(v["status"], 503);
    }
}
