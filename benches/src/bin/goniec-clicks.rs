//! `goniec-clicks`: load on the tracked-link redirect, `GET /l/{code}`. Reads
//! short codes (one per line) and requests them round-robin from
//! `--concurrency` keep-alive connections for `--seconds`, as a browser would
//! (a browser user agent, redirects not followed). Prints one JSON line:
//! requests, the rate, latency percentiles (µs) and the answers by status.
//!
//! It speaks HTTP/1.1 itself over plain sockets (one request at a time per
//! connection, the answer read to its end): a full HTTP client spent more CPU
//! per request than the redirect it measures, on the same two cores.
//!
//! usage: goniec-clicks --url http://127.0.0.1:PORT --codes FILE [--concurrency 64] [--seconds 10]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufStream};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    url: String,
    /// A file of codes, one per line. `--url` is `http://HOST:PORT`.
    #[arg(long)]
    codes: std::path::PathBuf,
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

const UA: &str =
    "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 Chrome/126.0 Mobile Safari/537.36";

async fn connect(addr: &str) -> std::io::Result<BufStream<TcpStream>> {
    let s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    Ok(BufStream::new(s))
}

/// One request; the status, after reading the answer to its end.
async fn get(conn: &mut BufStream<TcpStream>, host: &str, path: &str) -> std::io::Result<u16> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {UA}\r\n\r\n");
    conn.write_all(req.as_bytes()).await?;
    conn.flush().await?;
    let mut line = String::new();
    conn.read_line(&mut line).await?;
    let status: u16 = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut length = 0usize;
    loop {
        line.clear();
        if conn.read_line(&mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; length];
    conn.read_exact(&mut body).await?;
    Ok(status)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let codes: Arc<Vec<String>> = Arc::new(
        std::fs::read_to_string(&args.codes)?
            .lines()
            .filter(|l| !l.is_empty())
            .map(|c| format!("/l/{c}"))
            .collect(),
    );
    anyhow::ensure!(!codes.is_empty(), "no codes in {}", args.codes.display());
    let host: Arc<str> = args
        .url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .into();
    let until = Instant::now() + Duration::from_secs(args.seconds);
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for w in 0..args.concurrency {
        let (host, codes) = (host.clone(), codes.clone());
        tasks.spawn(async move {
            let mut conn = connect(&host).await.ok();
            let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
                .expect("valid bounds");
            let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
            let mut i = w;
            while Instant::now() < until {
                let t0 = Instant::now();
                if conn.is_none() {
                    conn = connect(&host).await.ok();
                }
                let status = match conn.as_mut() {
                    Some(c) => match get(c, &host, &codes[i % codes.len()]).await {
                        Ok(s) => s,
                        Err(_) => {
                            conn = None;
                            0
                        }
                    },
                    None => 0,
                };
                let _ = h.record(t0.elapsed().as_micros() as u64);
                *statuses.entry(status).or_insert(0) += 1;
                i += args_stride();
            }
            (h, statuses)
        });
    }
    let mut all = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
    while let Some(r) = tasks.join_next().await {
        let (h, s) = r?;
        all.add(h)?;
        for (k, v) in s {
            *statuses.entry(k).or_insert(0) += v;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "requests": all.len(),
            "seconds": (secs * 100.0).round() / 100.0,
            "per_second": (all.len() as f64 / secs).round(),
            "p50_us": all.value_at_quantile(0.5),
            "p99_us": all.value_at_quantile(0.99),
            "max_us": all.max(),
            "statuses": statuses,
        })
    );
    Ok(())
}

/// Workers step through the codes by a prime, so they do not walk in step.
fn args_stride() -> usize {
    7919
}
