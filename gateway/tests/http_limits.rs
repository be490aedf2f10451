//! What a request may cost (issue 12, item 2), over real loopback HTTP against a
//! gateway on a real Redis: bodies are read only after authentication, each route
//! has its own body limit, slow heads and bodies are cut off, connections and
//! buffered bytes are capped, and `vars` are bounded. Every refusal is a specific
//! problem and changes nothing in the store.
//!
//! Slow and half-sent requests need a raw socket: an HTTP client library sends
//! whole requests.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::Engine;
use goniec_testkit::gateway::{config_toml, metric_sum, parse, TestGateway, ACME_KEY, ADMIN_KEY};
use goniec_testkit::RedisServer;
use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One stub connector for SMS and e-mail.
const CONNECTORS: &str = r#"
[[connectors]]
name = "ok"
kind = "stub"
channels = ["sms", "email"]

[[routes]]
channel = "sms"
connector = "ok"

[[routes]]
channel = "email"
connector = "ok"
"#;

/// The test config with these `[server]` keys added (`max_body` is `2MiB`).
fn config(redis: &RedisServer, server: &str) -> goniec_config::Config {
    let toml = config_toml(Some(&redis.url()), CONNECTORS).replace(
        "max_body = \"2MiB\"",
        &format!("max_body = \"2MiB\"\n{server}"),
    );
    parse(&toml)
}

fn sms(to: &str) -> Value {
    json!({"channel": "sms", "to": to, "text": "Dzień dobry, przypominamy o płatności."})
}

async fn dbsize(redis: &RedisServer) -> i64 {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("DBSIZE").query_async(&mut c).await.unwrap()
}

/// An answer read off a raw socket.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// A problem document with this status and code.
    #[track_caller]
    fn assert_problem(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{self:?}"
        );
        assert_eq!(self.body["code"], code, "{self:?}");
        assert_eq!(self.body["status"], status, "{self:?}");
        assert_eq!(
            self.body["type"],
            format!("https://goniec.dev/problems/{code}")
        );
    }
}

/// Read one answer, or `None` if none comes `within`.
async fn answer(s: &mut TcpStream, within: Duration) -> Option<Answer> {
    tokio::time::timeout(within, async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let split = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            let n = s.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..split]).to_string();
        let status = head.split(' ').nth(1)?.parse().ok()?;
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        let mut body = buf[split + 4..].to_vec();
        while body.len() < len {
            let n = s.read(&mut chunk).await.ok()?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
        Some(Answer {
            status,
            head,
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        })
    })
    .await
    .ok()
    .flatten()
}

/// True when the server closes the connection `within` (reads EOF or a reset).
async fn closed_by_server(s: &mut TcpStream, within: Duration) -> bool {
    let mut chunk = [0u8; 1024];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// A request head (no body) with `Content-Length: length`.
fn head(method: &str, path: &str, auth: Option<&str>, length: usize) -> String {
    let auth = auth.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    format!(
        "{method} {path} HTTP/1.1\r\nHost: goniec\r\nContent-Type: application/json\r\n\
         {auth}Content-Length: {length}\r\n\r\n"
    )
}

async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.expect("connect")
}

/// (a) No key, a wrong key, or a key for the wrong kind of route: 401 from the
/// headers alone, before any byte of the (large) body is sent, and the connection
/// is closed rather than left waiting for the body.
#[tokio::test]
async fn unauthenticated_requests_are_answered_before_their_body_is_read() {
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    let gw = TestGateway::start(config(&redis, "")).await;
    gw.wait_ready(200, Duration::from_secs(10)).await;
    let before = dbsize(&redis).await;
    let acme = format!("Bearer {ACME_KEY}");
    let cases: [(&str, Option<&str>, &str); 8] = [
        ("/v1/messages", None, "unauthorized"),
        ("/v1/messages", Some("Bearer wrong-key"), "unauthorized"),
        (
            "/v1/messages",
            Some("Basic YWNtZTpzZWNyZXQ="),
            "unauthorized",
        ),
        ("/v1/messages/batch", None, "unauthorized"),
        ("/v1/opt-outs", Some("Bearer wrong-key"), "unauthorized"),
        ("/v1/webhooks/email-bounce", None, "unauthorized"),
        // A tenant key is no admin key.
        ("/v1/admin/suppressions", Some(&acme), "unauthorized"),
        // Signed over its body, an RCS event without a signature is not read either.
        ("/v1/webhooks/rcs", None, "bad-signature"),
    ];
    for (path, auth, code) in cases {
        let mut s = connect(gw.addr).await;
        s.write_all(head("POST", path, auth, 16_000_000).as_bytes())
            .await
            .unwrap();
        let t0 = Instant::now();
        let a = answer(&mut s, Duration::from_secs(3))
            .await
            .unwrap_or_else(|| panic!("{path} {auth:?}: no answer without the body"));
        a.assert_problem(401, code);
        assert!(t0.elapsed() < Duration::from_secs(2), "{path}: slow answer");
        // Not kept open for the 16 MB that never come.
        assert!(
            closed_by_server(&mut s, Duration::from_secs(2)).await,
            "{path} {auth:?}: connection left open"
        );
    }
    // A valid key with a declared length over the route's limit: 413, equally unread.
    let mut s = connect(gw.addr).await;
    s.write_all(head("POST", "/v1/messages", Some(&acme), 16_000_000).as_bytes())
        .await
        .unwrap();
    let a = answer(&mut s, Duration::from_secs(3))
        .await
        .expect("answer");
    a.assert_problem(413, "body-too-large");
    let m = gw.metrics().await;
    assert_eq!(metric_sum(&m, "goniec_http_buffered_bytes", &[]), 0.0);
    assert_eq!(dbsize(&redis).await, before);
    gw.stop().await;
}

/// (b) A body that stalls is cut off after `server.body_timeout` with 408, its
/// share of the buffer budget is given back, and nothing is stored.
#[tokio::test]
async fn a_stalled_body_is_cut_off_after_the_body_timeout() {
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    let gw = TestGateway::start(config(&redis, "body_timeout = \"1s\"")).await;
    gw.wait_ready(200, Duration::from_secs(10)).await;
    let before = dbsize(&redis).await;
    let body = serde_json::to_string(&sms("+48501234567")).unwrap();
    for path in ["/v1/messages", "/v1/messages/batch"] {
        let mut s = connect(gw.addr).await;
        let auth = format!("Bearer {ACME_KEY}");
        s.write_all(head("POST", path, Some(&auth), body.len()).as_bytes())
            .await
            .unwrap();
        s.write_all(&body.as_bytes()[..10]).await.unwrap();
        let t0 = Instant::now();
        let a = answer(&mut s, Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("{path}: a stalled body was never cut off"));
        let waited = t0.elapsed();
        a.assert_problem(408, "body-timeout");
        assert_eq!(a.header("connection"), Some("close"), "{a:?}");
        assert!(
            waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
            "{path}: cut off after {waited:?}, body_timeout is 1s"
        );
        assert!(closed_by_server(&mut s, Duration::from_secs(2)).await);
    }
    let m = gw.metrics().await;
    assert_eq!(metric_sum(&m, "goniec_http_buffered_bytes", &[]), 0.0);
    assert_eq!(dbsize(&redis).await, before);
    gw.stop().await;
}

/// (c) A request head that stalls is answered 408 after `server.header_timeout`
/// and closed; an idle connection is closed after it too, without an answer.
#[tokio::test]
async fn a_stalled_header_is_cut_off_after_the_header_timeout() {
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    let gw = TestGateway::start(config(&redis, "header_timeout = \"1s\"")).await;
    gw.wait_ready(200, Duration::from_secs(10)).await;

    let mut half = connect(gw.addr).await;
    let mut idle = connect(gw.addr).await;
    half.write_all(b"POST /v1/messages HTTP/1.1\r\nHost: goniec\r\nAuthori")
        .await
        .unwrap();
    let t0 = Instant::now();
    let a = answer(&mut half, Duration::from_secs(5))
        .await
        .expect("a half-sent head was never cut off");
    let waited = t0.elapsed();
    a.assert_problem(408, "header-timeout");
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
        "cut off after {waited:?}, header_timeout is 1s"
    );
    assert!(closed_by_server(&mut half, Duration::from_secs(2)).await);

    let mut chunk = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(3), idle.read(&mut chunk)).await;
    assert!(
        matches!(read, Ok(Ok(0))),
        "an idle connection must be closed without an answer: {read:?}"
    );
    let m = gw.metrics().await;
    assert!(metric_sum(&m, "goniec_http_header_timeouts_total", &[]) >= 2.0);
    // A client that keeps up is served as before.
    let (code, body) = gw.post("/v1/messages", &sms("+48501234567")).await;
    assert_eq!(code, 202, "{body}");
    gw.stop().await;
}

/// (d) Past `server.max_connections` open connections, one more is answered 503
/// with `Retry-After` and closed; when one closes, the next is served.
#[tokio::test]
async fn connections_over_the_cap_are_refused_with_503() {
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    // No readiness poll: the test's own HTTP client would keep a connection open.
    let gw = TestGateway::start(config(
        &redis,
        "max_connections = 3\nheader_timeout = \"30s\"",
    ))
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect(gw.addr).await);
    }
    // Each of the three is being served: a request on it is answered.
    for s in &mut held {
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: goniec\r\n\r\n")
            .await
            .unwrap();
        let a = answer(s, Duration::from_secs(3)).await.expect("served");
        assert_eq!(a.status, 200, "{a:?}");
    }
    let mut extra = connect(gw.addr).await;
    let a = answer(&mut extra, Duration::from_secs(3))
        .await
        .expect("the connection over the cap gets an answer");
    a.assert_problem(503, "too-many-connections");
    assert_eq!(a.header("retry-after"), Some("1"));
    assert!(closed_by_server(&mut extra, Duration::from_secs(3)).await);

    // Sending a request first changes nothing: still refused, still answered.
    let mut extra = connect(gw.addr).await;
    extra
        .write_all(
            head(
                "POST",
                "/v1/messages",
                Some(&format!("Bearer {ACME_KEY}")),
                10,
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let a = answer(&mut extra, Duration::from_secs(3))
        .await
        .expect("answer");
    a.assert_problem(503, "too-many-connections");

    // One closes: its place is free again.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    let served = loop {
        let mut s = connect(gw.addr).await;
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: goniec\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        match answer(&mut s, Duration::from_secs(3)).await {
            Some(a) if a.status == 200 => break true,
            _ if Instant::now() > deadline => break false,
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    assert!(served, "a freed place was not given to a new connection");
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let m = gw.metrics().await;
    assert!(metric_sum(&m, "goniec_http_connections_refused_total", &[]) >= 2.0);
    gw.stop().await;
}

/// (e) A single message may be only as large as what one message can carry; a
/// batch may be larger. Opt-outs are small. Each refusal is a 413 problem that
/// stores nothing; a message as large as it may legitimately be is accepted.
#[tokio::test]
async fn single_messages_have_a_small_limit_and_batches_a_large_one() {
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    // One message: ceil(16 KiB / 3) × 4 = 21848 of base64 + 2 × 1000 × 6 of texts
    // + 16 KiB of vars + 256 KiB for the rest = 312376 bytes.
    let gw = TestGateway::start(config(
        &redis,
        "max_attachments = \"16KiB\"\nmax_text_chars = 1000",
    ))
    .await;
    gw.wait_ready(200, Duration::from_secs(10)).await;
    let before = dbsize(&redis).await;

    let over = json!({"channel": "sms", "to": "+48501234567", "text": "a".repeat(320_000)});
    let refusals = [
        ("/v1/messages", over.clone()),
        ("/v1/opt-outs", json!({"to": "a".repeat(70_000)})),
    ];
    for (path, body) in refusals {
        let r = gw
            .req(Method::POST, path, ACME_KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 413, "{path}");
        let p: Value = r.json().await.unwrap();
        assert_eq!(p["code"], "body-too-large", "{path}: {p}");
    }
    // Without a Content-Length (chunked), cut at the limit while reading.
    let mut s = connect(gw.addr).await;
    let body = serde_json::to_vec(&over).unwrap();
    s.write_all(
        format!(
            "POST /v1/messages HTTP/1.1\r\nHost: goniec\r\nContent-Type: application/json\r\n\
             Authorization: Bearer {ACME_KEY}\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    for part in body.chunks(64 * 1024) {
        let mut chunk = format!("{:x}\r\n", part.len()).into_bytes();
        chunk.extend_from_slice(part);
        chunk.extend_from_slice(b"\r\n");
        if s.write_all(&chunk).await.is_err() {
            break; // answered and closed before the end: fine
        }
    }
    let _ = s.write_all(b"0\r\n\r\n").await;
    answer(&mut s, Duration::from_secs(5))
        .await
        .expect("answer")
        .assert_problem(413, "body-too-large");
    assert_eq!(dbsize(&redis).await, before, "a refusal stored something");

    // As large as a message may be: an attachment that takes just under the
    // 16 KiB as sent (11,900 bytes: 15,868 base64 characters in 209 lines),
    // 1000-character texts.
    let attachment = base64::engine::general_purpose::STANDARD.encode(vec![7u8; 11_900]);
    let email = json!({
        "channel": "email",
        "to": "jan.kowalski@example.com",
        "text": "ż".repeat(1000),
        "email": {
            "subject": "Wezwanie do zapłaty",
            "html": format!("<p>{}</p>", "a".repeat(990)),
            "attachments": [{"filename": "wezwanie.pdf", "content_type": "application/pdf", "content": attachment}]
        }
    });
    let (code, body) = gw.post("/v1/messages", &email).await;
    assert_eq!(code, 202, "{body}");

    // A batch far over one message's limit (about 600 KB) is read and accepted.
    let messages: Vec<Value> = (0..3000)
        .map(|i| {
            json!({"channel": "sms", "to": format!("+4850{:07}", 1_000_000 + i),
                   "text": "Dzień dobry, przypominamy o płatności za fakturę nr 2024/10/123456. Prosimy o wpłatę do końca tygodnia. Dziękujemy."})
        })
        .collect();
    let batch = json!({ "messages": messages });
    assert!(serde_json::to_vec(&batch).unwrap().len() > 500_000);
    let (code, body) = gw.post("/v1/messages/batch", &batch).await;
    assert_eq!(
        code,
        202,
        "{}",
        &body.to_string()[..200.min(body.to_string().len())]
    );
    assert_eq!(body["accepted"], 3000);
    gw.stop().await;
}

/// (f) `vars` are bounded in count, name length and size; each limit has its own
/// code, names the field, and stores nothing, alone or as a batch item.
#[tokio::test]
async fn too_many_vars_are_refused_with_their_code() {
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    let gw = TestGateway::start(config(&redis, "")).await;
    gw.wait_ready(200, Duration::from_secs(10)).await;
    let before = dbsize(&redis).await;
    let with_vars = |vars: serde_json::Map<String, Value>| json!({"channel": "sms", "to": "+48501234567", "template": "Dzień dobry {{v0}}", "vars": vars});
    let numbered = |n: usize| -> serde_json::Map<String, Value> {
        (0..n).map(|i| (format!("v{i}"), json!("Jan"))).collect()
    };
    let mut long_name = numbered(1);
    long_name.insert("n".repeat(65), json!("x"));
    let mut large = numbered(1);
    large.insert("statement".into(), json!("x".repeat(17 * 1024)));
    let cases = [
        ("101 vars", with_vars(numbered(101)), "too-many-vars"),
        (
            // As many as fit in the body limit: the parser skips past the 100th.
            "50,000 vars",
            with_vars(numbered(50_000)),
            "too-many-vars",
        ),
        (
            "a 65-character name",
            with_vars(long_name),
            "var-name-too-long",
        ),
        ("17 KiB of vars", with_vars(large), "vars-too-large"),
    ];
    for (name, body, code) in cases {
        let r = gw
            .req(Method::POST, "/v1/messages", ACME_KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422, "{name}");
        assert_eq!(
            r.headers()["content-type"].to_str().unwrap(),
            "application/problem+json"
        );
        let p: Value = r.json().await.unwrap();
        assert_eq!(
            (p["code"].as_str(), p["field"].as_str()),
            (Some(code), Some("vars")),
            "{name}: {p}"
        );
    }
    assert_eq!(dbsize(&redis).await, before, "a refusal stored something");
    // In a batch, the item is refused and the others are not.
    let batch = json!({"messages": [with_vars(numbered(101)), with_vars(numbered(100))]});
    let (code, body) = gw.post("/v1/messages/batch", &batch).await;
    assert_eq!(code, 207, "{body}");
    assert_eq!(body["results"][0]["error"]["code"], "too-many-vars");
    assert_eq!(body["results"][0]["error"]["field"], "vars");
    assert!(body["results"][1]["id"].is_string(), "{body}");
    gw.stop().await;
}

/// Bodies share `server.max_buffered`: while one stalled request holds most of it,
/// another that would not fit is answered 503 with `Retry-After` without being
/// read, and is served once the first lets go.
#[tokio::test]
async fn bodies_beyond_the_buffer_budget_get_503() {
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    let gw = TestGateway::start(config(
        &redis,
        "max_buffered = \"2MiB\"\nbody_timeout = \"20s\"",
    ))
    .await;
    gw.wait_ready(200, Duration::from_secs(10)).await;
    let mut hog = connect(gw.addr).await;
    let auth = format!("Bearer {ACME_KEY}");
    hog.write_all(head("POST", "/v1/messages/batch", Some(&auth), 1_900_000).as_bytes())
        .await
        .unwrap();
    hog.write_all(b"{\"messages\":[").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric_sum(&gw.metrics().await, "goniec_http_buffered_bytes", &[]) < 1_900_000.0 {
        assert!(Instant::now() < deadline, "the stalled body never reserved");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let messages: Vec<Value> = (0..4000)
        .map(|i| sms(&format!("+4850{:07}", 2_000_000 + i)))
        .collect();
    let batch = json!({ "messages": messages });
    let r = gw
        .req(Method::POST, "/v1/messages/batch", ACME_KEY)
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["code"], "buffers-full", "{p}");
    // The hog leaves; its share comes back and the same batch goes through.
    drop(hog);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (code, body) = gw.post("/v1/messages/batch", &batch).await;
        if code == 202 {
            assert_eq!(body["accepted"], 4000);
            break;
        }
        assert!(Instant::now() < deadline, "still refused: {code} {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gw.stop().await;
}

/// Admin routes read their body only after the admin key is checked, too.
#[tokio::test]
async fn admin_bodies_are_read_after_the_admin_key() {
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    let gw = TestGateway::start(config(&redis, "")).await;
    gw.wait_ready(200, Duration::from_secs(10)).await;
    let mut s = connect(gw.addr).await;
    let auth = format!("Bearer {ADMIN_KEY}");
    s.write_all(head("POST", "/v1/admin/suppressions", Some(&auth), 100_000).as_bytes())
        .await
        .unwrap();
    // An admin key passes, then the small-body limit applies: 413 unread.
    answer(&mut s, Duration::from_secs(3))
        .await
        .expect("answer")
        .assert_problem(413, "body-too-large");
    gw.stop().await;
}
