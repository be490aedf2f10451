//! `goniec-sink`: a callback receiver for the bench rigs, cheap enough not to be
//! the bottleneck (a Python stdlib server spent 90 µs of CPU per callback, as
//! much as the gateway's whole delivery path). It answers every request `204`,
//! POSTs (Goniec's signed callbacks, one or a batched JSON array of them) and
//! GETs (Kannel's `dlr-url`) alike, and counts them: `GET /count` answers
//! `{"requests": N, "callbacks": C, "final": F}`: requests, the callbacks they
//! carried, and the final ones among those: a Goniec callback whose `status` is
//! final, or a Kannel delivery report of type 1 (delivered), 2 (failed) or 16
//! (rejected by the SMSC).
//!
//! usage: goniec-sink --listen 127.0.0.1:PORT

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

#[derive(Default)]
struct Counts {
    requests: AtomicU64,
    callbacks: AtomicU64,
    finals: AtomicU64,
}

const FINAL_STATUSES: [&[u8]; 4] = [
    b"\"status\":\"delivered\"",
    b"\"status\":\"undeliverable\"",
    b"\"status\":\"expired\"",
    b"\"status\":\"failed\"",
];

fn occurrences(body: &[u8], what: &[u8]) -> u64 {
    body.windows(what.len()).filter(|w| *w == what).count() as u64
}

/// (callbacks, final ones) a request carries.
fn tally(query: &str, body: &[u8]) -> (u64, u64) {
    let callbacks = occurrences(body, b"\"status\":");
    if callbacks == 0 {
        // A Kannel delivery report: one, in the query.
        let kannel = query
            .split('&')
            .any(|kv| matches!(kv, "type=1" | "type=2" | "type=16"));
        return (1, u64::from(kannel));
    }
    let finals = FINAL_STATUSES.iter().map(|s| occurrences(body, s)).sum();
    (callbacks, finals)
}

async fn handle(
    counts: Arc<Counts>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() == "/count" {
        let body = format!(
            "{{\"requests\":{},\"callbacks\":{},\"final\":{}}}",
            counts.requests.load(Ordering::Relaxed),
            counts.callbacks.load(Ordering::Relaxed),
            counts.finals.load(Ordering::Relaxed)
        );
        return Ok(Response::new(Full::new(Bytes::from(body))));
    }
    let query = req.uri().query().unwrap_or("").to_string();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let (callbacks, finals) = tally(&query, &body);
    counts.requests.fetch_add(1, Ordering::Relaxed);
    counts.callbacks.fetch_add(callbacks, Ordering::Relaxed);
    counts.finals.fetch_add(finals, Ordering::Relaxed);
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = hyper::StatusCode::NO_CONTENT;
    Ok(r)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let listen: SocketAddr = match (args.next().as_deref(), args.next()) {
        (Some("--listen"), Some(a)) => a.parse()?,
        _ => anyhow::bail!("usage: goniec-sink --listen 127.0.0.1:PORT"),
    };
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let counts = Arc::new(Counts::default());
    loop {
        let (stream, _) = listener.accept().await?;
        let counts = counts.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(counts.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::tally;

    #[test]
    fn callbacks_and_finals_are_counted() {
        assert_eq!(tally("", br#"{"id":"x","status":"delivered"}"#), (1, 1));
        assert_eq!(tally("", br#"{"id":"x","status":"submitted"}"#), (1, 0));
        let batch = br#"[{"status":"submitted"},{"status":"delivered"},{"status":"failed"}]"#;
        assert_eq!(tally("", batch), (3, 2));
        assert_eq!(tally("id=7&type=1", b""), (1, 1));
        assert_eq!(tally("type=16", b""), (1, 1));
        assert_eq!(tally("type=8&id=7", b""), (1, 0));
        assert_eq!(tally("type=12", b""), (1, 0));
    }
}
