//! E-mail end to end on the real wire: HTTP API → Redis → SMTP connector (lettre,
//! STARTTLS, AUTH) → `goniec smtp-sink`. Each test spawns its own redis-server and
//! sink on free ports.

use std::time::Duration;

use goniec_sims::smtp_sink::{SinkConfig, SmtpSink};
use goniec_testkit::gateway::{config_toml, parse, TestGateway, OTHER_KEY};
use goniec_testkit::RedisServer;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

fn relay(port: u16) -> String {
    format!(
        r#"
[[connectors]]
name = "relay"
kind = "smtp"
port = {port}
tls = "starttls"
tls_accept_invalid_certs = true
username = "goniec"
password = "secret"
timeout = "5s"
from = "ACME Windykacja <noreply@acme.example>"

[[routes]]
channel = "email"
connector = "relay"
"#
    )
}

fn sink_cfg() -> SinkConfig {
    SinkConfig {
        require_starttls: true,
        require_auth: Some(("goniec".into(), "secret".into())),
        ..Default::default()
    }
}

async fn start(redis: &RedisServer, port: u16) -> TestGateway {
    let gw = TestGateway::start(parse(&config_toml(Some(&redis.url()), &relay(port)))).await;
    gw.wait_ready(200, Duration::from_secs(10)).await;
    gw
}

fn email(to: &str, n: u32) -> Value {
    json!({
        "channel": "email",
        "to": to,
        "text": format!("Dzień dobry, zaległość {n},50 zł. Zażółć gęślą jaźń."),
        "email": {
            "subject": format!("Wyciąg nr {n} — październik, zażółć gęślą jaźń"),
            "html": format!("<p>Dzień dobry, <b>zaległość {n},50 zł</b>.</p>")
        }
    })
}

async fn send(gw: &TestGateway, body: &Value) -> String {
    let (code, r) = gw.post("/v1/messages", body).await;
    assert_eq!(code, 202, "{r}");
    r["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn mail_goes_out_over_starttls_with_auth_and_intact_polish_text() {
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    let stop = CancellationToken::new();
    let sink = SmtpSink::start("127.0.0.1:0".parse().unwrap(), sink_cfg(), stop.clone())
        .await
        .unwrap();
    let gw = start(&redis, sink.local_addr().port()).await;
    let id = send(&gw, &email("Jan.Kowalski@example.com", 1)).await;
    gw.wait_status(&id, Duration::from_secs(15), |s| s == "submitted")
        .await;

    let got = sink.messages();
    assert_eq!(got.len(), 1);
    let m = &got[0];
    assert!(m.tls, "sent after STARTTLS");
    assert_eq!(m.auth_user.as_deref(), Some("goniec"));
    assert_eq!(m.from, "noreply@acme.example");
    assert_eq!(m.rcpts, ["Jan.Kowalski@example.com"]);
    let parsed = mail_parser::MessageParser::default()
        .parse(&m.data)
        .expect("a MIME message");
    assert_eq!(
        parsed.subject(),
        Some("Wyciąg nr 1 — październik, zażółć gęślą jaźń")
    );
    assert_eq!(
        parsed.message_id(),
        Some(format!("{}@acme.example", id.to_ascii_lowercase()).as_str()),
        "bounces are matched by it"
    );
    let from = parsed.from().and_then(|a| a.first()).unwrap();
    assert_eq!(from.name(), Some("ACME Windykacja"));
    assert_eq!(
        parsed.body_text(0).as_deref().map(str::trim),
        Some("Dzień dobry, zaległość 1,50 zł. Zażółć gęślą jaźń.")
    );
    assert!(parsed
        .body_html(0)
        .unwrap()
        .contains("<b>zaległość 1,50 zł</b>"));
    gw.stop().await;
    stop.cancel();
}

/// A 4xx is retried and the mail is delivered once; a 5.1.1 fails the message,
/// suppresses the address, and the next submission to it is refused.
#[tokio::test]
async fn temporary_failures_retry_hard_bounces_fail_and_suppress() {
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    let stop = CancellationToken::new();
    let cfg = SinkConfig {
        temp_fail_every: 2,
        ..sink_cfg()
    };
    let sink = SmtpSink::start("127.0.0.1:0".parse().unwrap(), cfg, stop.clone())
        .await
        .unwrap();
    let gw = start(&redis, sink.local_addr().port()).await;
    let a = send(&gw, &email("anna@example.com", 1)).await;
    let b = send(&gw, &email("piotr@example.com", 2)).await;
    for id in [&a, &b] {
        gw.wait_status(id, Duration::from_secs(15), |s| s == "submitted")
            .await;
    }
    let s = sink.stats();
    assert!(s.temp_failed >= 1, "{s:?}");
    assert_eq!(sink.messages().len(), 2, "each delivered once: {s:?}");

    let bounced = send(&gw, &email("bounce-jan@example.com", 3)).await;
    let m = gw
        .wait_status(&bounced, Duration::from_secs(15), |s| s == "failed")
        .await;
    let last = m["events"].as_array().unwrap().last().unwrap().clone();
    assert!(
        last["reason"].as_str().unwrap().starts_with("smtp 550"),
        "{last}"
    );
    assert!(last["detail"].as_str().unwrap().contains("5.1.1"), "{last}");
    let (code, r) = gw
        .post("/v1/messages", &email("Bounce-Jan@example.com", 4))
        .await;
    assert_eq!(code, 422, "{r}");
    assert_eq!(r["reasons"], json!(["suppressed"]), "{r}");
    gw.stop().await;
    stop.cancel();
}

/// The relay is down for a while: nothing is lost, mail goes out once it is back.
#[tokio::test]
async fn a_relay_that_is_down_for_a_while_loses_nothing() {
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    // A free port with nothing listening yet.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let gw = start(&redis, port).await;
    let ids = [
        send(&gw, &email("ewa@example.com", 1)).await,
        send(&gw, &email("adam@example.com", 2)).await,
    ];
    tokio::time::sleep(Duration::from_millis(800)).await;
    for id in &ids {
        let (_, m) = gw.get(&format!("/v1/messages/{id}")).await;
        assert_eq!(m["status"], "queued", "waiting for the relay: {m}");
    }
    let stop = CancellationToken::new();
    let sink = SmtpSink::start(
        format!("127.0.0.1:{port}").parse().unwrap(),
        sink_cfg(),
        stop.clone(),
    )
    .await
    .unwrap();
    for id in &ids {
        gw.wait_status(id, Duration::from_secs(20), |s| s == "submitted")
            .await;
    }
    assert_eq!(sink.messages().len(), 2);
    gw.stop().await;
    stop.cancel();
}

/// A DSN posted by a mailbox hook marks the message undeliverable and suppresses
/// the address; garbage gets a 400 and changes nothing.
#[tokio::test]
async fn asynchronous_bounces_mark_the_message_and_suppress_the_address() {
    use goniec_testkit::gateway::ACME_KEY;
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    let stop = CancellationToken::new();
    let sink = SmtpSink::start("127.0.0.1:0".parse().unwrap(), sink_cfg(), stop.clone())
        .await
        .unwrap();
    let gw = start(&redis, sink.local_addr().port()).await;
    let id = send(&gw, &email("marta.nowak@example.com", 1)).await;
    gw.wait_status(&id, Duration::from_secs(15), |s| s == "submitted")
        .await;
    let post = |body: Vec<u8>| {
        let gw = &gw;
        async move {
            let r = gw
                .req(reqwest::Method::POST, "/v1/webhooks/email-bounce", ACME_KEY)
                .header("content-type", "message/rfc822")
                .body(body)
                .send()
                .await
                .unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };

    for garbage in [
        b"".to_vec(),
        b"\x00\xff\x13 definitely not mail".to_vec(),
        b"From: a@b.c\r\nSubject: hello\r\n\r\njust a letter\r\n".to_vec(),
    ] {
        let (code, r) = post(garbage).await;
        assert_eq!(
            (code, r["code"].as_str()),
            (400, Some("invalid-bounce")),
            "{r}"
        );
    }
    let (_, m) = gw.get(&format!("/v1/messages/{id}")).await;
    assert_eq!(m["status"], "submitted", "garbage changed nothing");

    let message_id = format!("{}@acme.example", id.to_ascii_lowercase());
    let dsn = format!(
        "Return-Path: <>\r\n\
From: MAILER-DAEMON@mx.example.com (Mail Delivery System)\r\n\
To: noreply@acme.example\r\n\
Subject: Undelivered Mail Returned to Sender\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=\"B0UND\"\r\n\
\r\n\
--B0UND\r\n\
Content-Type: text/plain; charset=us-ascii\r\n\
\r\n\
I'm sorry to have to inform you that your message could not be delivered.\r\n\
\r\n\
--B0UND\r\n\
Content-Type: message/delivery-status\r\n\
\r\n\
Reporting-MTA: dns; mx.example.com\r\n\
Arrival-Date: Sun, 22 Nov 2026 18:00:00 +0100 (CET)\r\n\
\r\n\
Final-Recipient: rfc822; marta.nowak@example.com\r\n\
Original-Recipient: rfc822;marta.nowak@example.com\r\n\
Action: failed\r\n\
Status: 5.1.1\r\n\
Remote-MTA: dns; mail.example.com\r\n\
Diagnostic-Code: smtp; 550 5.1.1 <marta.nowak@example.com>: Recipient address\r\n\
\x20rejected: User unknown in virtual mailbox table\r\n\
\r\n\
Final-Recipient: rfc822; ceo@bigclient.example\r\n\
Action: failed\r\n\
Status: 5.1.1\r\n\
Diagnostic-Code: smtp; 550 5.1.1 forged: a recipient this message never had\r\n\
\r\n\
--B0UND\r\n\
Content-Type: text/rfc822-headers\r\n\
\r\n\
From: ACME Windykacja <noreply@acme.example>\r\n\
To: marta.nowak@example.com\r\n\
Subject: =?utf-8?q?Wyci=C4=85g?=\r\n\
Message-ID: <{message_id}>\r\n\
\r\n\
--B0UND--\r\n"
    );
    let (code, r) = post(dsn.into_bytes()).await;
    assert_eq!(code, 200, "{r}");
    // Only the message's own recipient: a DSN naming a real Message-ID cannot
    // suppress another address by listing it.
    assert_eq!(r["suppressed"], json!(["marta.nowak@example.com"]), "{r}");
    assert_eq!(r["ignored_recipients"], 1, "{r}");
    let r = gw
        .req(reqwest::Method::POST, "/v1/messages", ACME_KEY)
        .json(&email("ceo@bigclient.example", 2))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        202,
        "the forged recipient is not suppressed"
    );
    let m = gw
        .wait_status(&id, Duration::from_secs(5), |s| s == "undeliverable")
        .await;
    let last = m["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["reason"], "bounce 5.1.1", "{last}");
    assert!(
        last["detail"].as_str().unwrap().contains("User unknown"),
        "{last}"
    );
    let (code, r) = gw
        .post("/v1/messages", &email("marta.nowak@example.com", 2))
        .await;
    assert_eq!(
        (code, r["reasons"].clone()),
        (422, json!(["suppressed"])),
        "{r}"
    );
    gw.stop().await;
    stop.cancel();
}

/// Attachments and List-Unsubscribe (tenant `other`, whose keys follow its table),
/// and a bad attachment refused at the API.
#[tokio::test]
async fn attachments_and_list_unsubscribe_arrive() {
    use goniec_testkit::gateway::OTHER_KEY;
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    let stop = CancellationToken::new();
    let sink = SmtpSink::start("127.0.0.1:0".parse().unwrap(), sink_cfg(), stop.clone())
        .await
        .unwrap();
    let extra = format!(
        "[tenants.email]\nunsubscribe_url = \"https://acme.example/unsubscribe\"\nunsubscribe_mailto = \"unsubscribe@acme.example\"\n{}",
        relay(sink.local_addr().port())
    );
    let gw = TestGateway::start(parse(&config_toml(Some(&redis.url()), &extra))).await;
    gw.wait_ready(200, Duration::from_secs(10)).await;
    let pdf = b"%PDF-1.4\n% Wyciag\n1 0 obj\n<<>>\nendobj\n%%EOF\n";
    use base64::Engine;
    let mut body = email("jan@example.com", 7);
    body["email"]["attachments"] = json!([{
        "filename": "wyciąg-listopad.pdf",
        "content_type": "application/pdf",
        "content": base64::engine::general_purpose::STANDARD.encode(pdf),
    }]);
    let post = |b: Value| {
        let gw = &gw;
        async move {
            let r = gw
                .req(reqwest::Method::POST, "/v1/messages", OTHER_KEY)
                .json(&b)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (code, r) = post(body.clone()).await;
    assert_eq!(code, 202, "{r}");
    let id = r["id"].as_str().unwrap().to_string();
    let r = gw
        .req(
            reqwest::Method::GET,
            &format!("/v1/messages/{id}"),
            OTHER_KEY,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    for _ in 0..200 {
        if !sink.messages().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let got = sink.messages();
    assert_eq!(got.len(), 1);
    let parsed = mail_parser::MessageParser::default()
        .parse(&got[0].data)
        .unwrap();
    use mail_parser::MimeHeaders;
    let a = parsed.attachment(0).expect("an attachment");
    assert_eq!(a.attachment_name(), Some("wyciąg-listopad.pdf"));
    assert_eq!(a.contents(), pdf);
    assert_eq!(
        parsed.body_text(0).as_deref().map(str::trim),
        Some("Dzień dobry, zaległość 7,50 zł. Zażółć gęślą jaźń.")
    );
    let header = |name: &str| {
        parsed
            .header_raw(name)
            // Unfolded (a long header may be folded onto several lines).
            .map(|v| v.replace("\r\n", "").trim().to_string())
            .unwrap_or_default()
    };
    assert_eq!(
        header("List-Unsubscribe"),
        "<mailto:unsubscribe@acme.example>, <https://acme.example/unsubscribe>"
    );
    assert_eq!(
        header("List-Unsubscribe-Post"),
        "List-Unsubscribe=One-Click"
    );

    // Bad attachments are refused and change nothing.
    for (attachment, field) in [
        (
            json!({"filename": "a.pdf", "content_type": "application/pdf", "content": "not base64!"}),
            "email.attachments[0].content",
        ),
        (
            json!({"filename": "../etc/passwd", "content_type": "text/plain", "content": ""}),
            "email.attachments[0].filename",
        ),
        (
            json!({"filename": "a.pdf", "content_type": "pdf", "content": ""}),
            "email.attachments[0].content_type",
        ),
    ] {
        let mut b = email("jan@example.com", 8);
        b["email"]["attachments"] = json!([attachment]);
        let (code, r) = post(b).await;
        assert_eq!((code, r["field"].as_str()), (422, Some(field)), "{r}");
    }
    gw.stop().await;
    stop.cancel();
}

/// A domain at its limit is throttled on its own: mail to other domains keeps
/// flowing past it, and the throttled mail still goes out, once, at its pace.
#[tokio::test]
async fn a_busy_domain_is_throttled_while_the_rest_flow() {
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    let stop = CancellationToken::new();
    let sink = SmtpSink::start("127.0.0.1:0".parse().unwrap(), sink_cfg(), stop.clone())
        .await
        .unwrap();
    let limits = r#"
[connectors.domain_limits."big.example"]
concurrency = 1
rate = "1/s"
"#;
    let extra = format!("{}{limits}", relay(sink.local_addr().port()));
    // `[connectors.domain_limits]` must follow its connector, before `[[routes]]`.
    let extra = extra.replacen(
        "[[routes]]\nchannel = \"email\"\nconnector = \"relay\"\n",
        "",
        1,
    ) + "\n[[routes]]\nchannel = \"email\"\nconnector = \"relay\"\n";
    let gw = TestGateway::start(parse(&config_toml(Some(&redis.url()), &extra))).await;
    gw.wait_ready(200, Duration::from_secs(10)).await;

    let mut big = Vec::new();
    for n in 0..4 {
        big.push(send(&gw, &email(&format!("klient{n}@Big.Example"), n)).await);
    }
    let mut small = Vec::new();
    for n in 0..20 {
        small.push(send(&gw, &email(&format!("klient{n}@small.example"), n)).await);
    }
    for id in &small {
        gw.wait_status(id, Duration::from_secs(15), |s| s == "submitted")
            .await;
    }
    // One per second to big.example: four take at least three seconds, so the
    // other domain's twenty were not queued behind them.
    let to_big = |msgs: &[goniec_sims::smtp_sink::ReceivedMail]| {
        msgs.iter()
            .filter(|m| m.rcpts[0].to_ascii_lowercase().ends_with("@big.example"))
            .count()
    };
    let early = to_big(&sink.messages());
    assert!(
        early < 4,
        "big.example was not throttled: {early} already out"
    );
    for id in &big {
        gw.wait_status(id, Duration::from_secs(20), |s| s == "submitted")
            .await;
    }
    let msgs = sink.messages();
    assert_eq!(to_big(&msgs), 4, "each once");
    assert_eq!(msgs.len(), 24);
    gw.stop().await;
    stop.cancel();
}

/// A tenant with its own relay: its mail goes there, everyone else's to the
/// shared one.
#[tokio::test]
async fn a_tenant_route_takes_its_own_relay() {
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    let stop = CancellationToken::new();
    let start_sink = || SmtpSink::start("127.0.0.1:0".parse().unwrap(), sink_cfg(), stop.clone());
    let (shared, own) = (start_sink().await.unwrap(), start_sink().await.unwrap());
    let own_relay = relay(own.local_addr().port())
        .replace("name = \"relay\"", "name = \"acme-relay\"")
        .replace(
            "connector = \"relay\"",
            "connector = \"acme-relay\"\ntenant = \"acme\"",
        );
    let extra = format!("{}{own_relay}", relay(shared.local_addr().port()));
    let gw = TestGateway::start(parse(&config_toml(Some(&redis.url()), &extra))).await;
    gw.wait_ready(200, Duration::from_secs(10)).await;

    // The test client is tenant `acme`.
    let id = send(&gw, &email("jan@example.com", 1)).await;
    gw.wait_status(&id, Duration::from_secs(15), |s| s == "submitted")
        .await;
    assert_eq!(own.messages().len(), 1);
    assert!(shared.messages().is_empty());

    let r = gw
        .req(reqwest::Method::POST, "/v1/messages", OTHER_KEY)
        .json(&email("anna@example.com", 2))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while shared.messages().is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        shared.messages().len(),
        1,
        "the other tenant uses the shared relay"
    );
    assert_eq!(own.messages().len(), 1);
    gw.stop().await;
    stop.cancel();
}
