//! `goniec-sink`: a callback receiver for the bench rigs, cheap enough not to be
//! the bottleneck (a Python stdlib server spent 90 µs of CPU per callback, as
//! much as the gateway's whole delivery path). It answers every request `204`,
//! POSTs (Goniec's signed callbacks) and GETs (Kannel's `dlr-url`) alike, and
//! counts them: `GET /count` answers `{"requests": N, "final": F}`, where a final
//! one is a Goniec callback whose `status` is final, or a Kannel delivery report
//! of type 1 (delivered), 2 (failed) or 16 (rejected by the SMSC).
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
    finals: AtomicU64,
}

const FINAL_STATUSES: [&[u8]; 4] = [
    b"\"status\":\"delivered\"",
    b"\"status\":\"undeliverable\"",
    b"\"status\":\"expired\"",
    b"\"status\":\"failed\"",
];

fn is_final(query: &str, body: &[u8]) -> bool {
    let kannel = query
        .split('&')
        .any(|kv| matches!(kv, "type=1" | "type=2" | "type=16"));
    kannel
        || FINAL_STATUSES
            .iter()
            .any(|s| body.windows(s.len()).any(|w| w == *s))
}

async fn handle(
    counts: Arc<Counts>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() == "/count" {
        let body = format!(
            "{{\"requests\":{},\"final\":{}}}",
            counts.requests.load(Ordering::Relaxed),
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
    counts.requests.fetch_add(1, Ordering::Relaxed);
    if is_final(&query, &body) {
        counts.finals.fetch_add(1, Ordering::Relaxed);
    }
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
    use super::is_final;

    #[test]
    fn finals_are_told_apart() {
        assert!(is_final("", br#"{"id":"x","status":"delivered"}"#));
        assert!(!is_final("", br#"{"id":"x","status":"submitted"}"#));
        assert!(is_final("id=7&type=1", b""));
        assert!(is_final("type=16", b""));
        assert!(!is_final("type=8&id=7", b""));
        assert!(!is_final("type=12", b""));
    }
}
