//! Interop with an SMTP server we did not write: aiosmtpd (PyPI) as the receiving
//! MTA, from `tests/interop/smtp_peer.py`, which saves every message's bytes
//! exactly as they came over the wire. The gateway sends one e-mail of tenant
//! `other` (DKIM key, unsubscribe URL and mailto) with a Polish subject, text +
//! HTML, a PDF and a CSV attachment; the saved message is decoded with
//! `mail-parser` and its DKIM-Signature is verified by dkimpy
//! (`tests/interop/dkim_verify.py`), a verifier we did not write either, against
//! the test key's TXT record.
//!
//! Needs a Python with `tests/interop/requirements.txt`: `tests/run` makes a
//! virtual environment under `target/` and passes it as `GONIEC_PYTHON`. Without
//! it the test fails with the install line (see `goniec_testkit::require`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use base64::Engine as _;
use goniec_testkit::gateway::{config_toml, parse, TestGateway, OTHER_KEY};
use goniec_testkit::peer::Peer;
use goniec_testkit::{python, require, runs, RedisServer};
use mail_parser::{MessageParser, MimeHeaders, PartType};
use reqwest::Method;
use serde_json::{json, Value};

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/interop")
}

/// `tests/interop/smtp_peer.py` running under python3, stopped (by PID) on drop.
struct PyPeer(Peer);

impl PyPeer {
    fn spawn(out_dir: &Path) -> PyPeer {
        let mut cmd = Command::new(python());
        cmd.arg(interop_dir().join("smtp_peer.py")).arg(out_dir);
        PyPeer(Peer::spawn(cmd, "smtp_peer.py"))
    }

    /// Wait until at least `n` messages were saved; return their events.
    async fn wait_messages(&self, n: usize, within: Duration) -> Vec<Value> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.0.events();
            if got.len() >= n {
                return got;
            }
            if Instant::now() > deadline {
                panic!("expected {n} messages saved by smtp_peer.py, got {got:?}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    fn kill(&mut self) {
        self.0.kill();
    }
}

/// `python3 tests/interop/dkim_verify.py MESSAGE tests/interop/dkim-test.txt`.
fn dkim_verify(message: &Path) -> Output {
    Command::new(python())
        .arg(interop_dir().join("dkim_verify.py"))
        .arg(message)
        .arg(interop_dir().join("dkim-test.txt"))
        .output()
        .expect("run python3 dkim_verify.py")
}

fn out_text(o: &Output) -> String {
    format!(
        "exit {:?}; stdout: {}; stderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).trim(),
        String::from_utf8_lossy(&o.stderr).trim()
    )
}

/// Tenant `other`'s `[tenants.email]` (it must open `extra`: `config_toml` puts
/// `extra` right after `other`'s keys), then the connector to the peer and the route.
fn extra(port: u16) -> String {
    let key = interop_dir().join("dkim-test.key");
    let key = key.canonicalize().unwrap_or(key);
    format!(
        r#"[tenants.email]
dkim_domain = "acme.example"
dkim_selector = "goniec"
dkim_private_key = '{key}'
unsubscribe_url = "https://acme.example/unsubscribe"
unsubscribe_mailto = "unsubscribe@acme.example"

[[connectors]]
name = "aiosmtpd"
kind = "smtp"
port = {port}
tls = "none"
timeout = "5s"
from = "ACME Windykacja <noreply@acme.example>"

[[routes]]
channel = "email"
connector = "aiosmtpd"
"#,
        key = key.display(),
    )
}

async fn as_other(
    gw: &TestGateway,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut req = gw.req(method, path, OTHER_KEY);
    if let Some(b) = body {
        req = req.json(b);
    }
    let r = req.send().await.expect("request");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// Poll tenant `other`'s message until `done` holds for its status.
async fn wait_status_other(
    gw: &TestGateway,
    id: &str,
    within: Duration,
    done: impl Fn(&str) -> bool,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let (code, body) = as_other(gw, Method::GET, &format!("/v1/messages/{id}"), None).await;
        if code == 200 && body["status"].as_str().is_some_and(&done) {
            return body;
        }
        if Instant::now() > deadline {
            panic!(
                "message {id} did not reach the expected status in {within:?}; last: {code} {body}"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A header's raw value with folding undone.
fn unfolded(raw: &str) -> String {
    raw.split("\r\n")
        .flat_map(|l| l.split('\n'))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The `tag=value` list of a DKIM-Signature (whitespace removed from values).
fn dkim_tags(raw: &str) -> Vec<(String, String)> {
    unfolded(raw)
        .split(';')
        .filter_map(|t| t.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.split_whitespace().collect()))
        .collect()
}

#[tokio::test]
async fn aiosmtpd_receives_a_dkim_signed_mail_with_attachments_and_one_click_unsubscribe() {
    if !require(
        runs(&python(), &["-c", "import aiosmtpd, dkim"]),
        "python3 with aiosmtpd and dkimpy",
        "tests/run makes a virtual environment with them; it needs: sudo apt-get install -y python3-venv",
    ) {
        return;
    }
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut peer = PyPeer::spawn(dir.path());
    let gw = TestGateway::start(parse(&config_toml(Some(&redis.url()), &extra(peer.0.port)))).await;
    gw.wait_ready(200, Duration::from_secs(15)).await;

    let subject = "Wyciąg nr 7 — październik: zażółć gęślą jaźń, ZAŻÓŁĆ GĘŚLĄ JAŹŃ";
    let text = "Dzień dobry, zaległość 120,50 zł. W załączniku wyciąg.";
    let html = "<p>Dzień dobry, <b>zaległość 120,50 zł</b>. W załączniku wyciąg.</p>";
    // A PDF (binary, as real ones are) and a CSV: ASCII text with LF line ends,
    // which must not reach the wire as bare LFs (RFC 5322 section 2.3).
    let pdf: Vec<u8> =
        b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj << >> endobj\ntrailer\n%%EOF\n".to_vec();
    let csv: Vec<u8> = b"data;opis;kwota\n2026-10-01;faktura 2026/11/118;120,50\n".to_vec();
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let body = json!({
        "channel": "email",
        "to": "Jan.Kowalski@example.com",
        "text": text,
        "email": {
            "subject": subject,
            "html": html,
            "attachments": [
                {"filename": "wyciag.pdf", "content_type": "application/pdf", "content": b64(&pdf)},
                {"filename": "wyciag.csv", "content_type": "text/csv", "content": b64(&csv)},
            ],
        }
    });
    let (code, r) = as_other(&gw, Method::POST, "/v1/messages", Some(&body)).await;
    assert_eq!(code, 202, "{r}");
    let id = r["id"].as_str().expect("id").to_string();
    wait_status_other(&gw, &id, Duration::from_secs(20), |s| s == "submitted").await;

    let events = peer.wait_messages(1, Duration::from_secs(5)).await;
    assert_eq!(events.len(), 1, "delivered once: {events:?}");
    let ev = &events[0];
    assert_eq!(ev["mail_from"], "noreply@acme.example", "{ev}");
    assert_eq!(ev["rcpt_tos"], json!(["Jan.Kowalski@example.com"]), "{ev}");
    let file = PathBuf::from(ev["file"].as_str().expect("file"));
    let raw = std::fs::read(&file).expect("read the saved message");

    // What a MIME parser we did not write makes of it.
    let m = MessageParser::default()
        .parse(&raw)
        .expect("a MIME message");
    assert_eq!(
        m.subject(),
        Some(subject),
        "the UTF-8 subject decodes exactly"
    );
    assert_eq!(
        m.message_id(),
        Some(format!("{}@acme.example", id.to_ascii_lowercase()).as_str()),
        "Message-ID (bounces are matched by it)"
    );
    let from = m.from().and_then(|a| a.first()).expect("From");
    assert_eq!(
        (from.name(), from.address()),
        (Some("ACME Windykacja"), Some("noreply@acme.example"))
    );

    // multipart/mixed [ multipart/alternative [ text/plain, text/html ], PDF, CSV ]
    let root = m.root_part();
    let ct = root.content_type().expect("root Content-Type");
    assert_eq!(
        (ct.ctype(), ct.subtype()),
        ("multipart", Some("mixed")),
        "{ct:?}"
    );
    let PartType::Multipart(kids) = &root.body else {
        panic!("root is not multipart: {:?}", root.body);
    };
    assert_eq!(kids.len(), 3, "body + two attachments: {kids:?}");
    let alt = &m.parts[kids[0] as usize];
    let ct = alt.content_type().expect("alternative Content-Type");
    assert_eq!(
        (ct.ctype(), ct.subtype()),
        ("multipart", Some("alternative")),
        "{ct:?}"
    );
    let PartType::Multipart(alts) = &alt.body else {
        panic!("alternative part is not multipart: {:?}", alt.body);
    };
    let kinds: Vec<(String, String)> = alts
        .iter()
        .map(|i| {
            let ct = m.parts[*i as usize]
                .content_type()
                .expect("part Content-Type");
            (
                ct.ctype().to_string(),
                ct.subtype().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("text".to_string(), "plain".to_string()),
            ("text".to_string(), "html".to_string())
        ]
    );
    assert_eq!(m.body_text(0).as_deref().map(str::trim), Some(text));
    assert_eq!(m.body_html(0).as_deref().map(str::trim), Some(html));

    let files = [
        (&kids[1], "wyciag.pdf", ("application", "pdf"), &pdf),
        (&kids[2], "wyciag.csv", ("text", "csv"), &csv),
    ];
    for (i, name, (ctype, subtype), bytes) in files {
        let att = &m.parts[*i as usize];
        let ct = att.content_type().expect("attachment Content-Type");
        assert_eq!(
            (ct.ctype(), ct.subtype()),
            (ctype, Some(subtype)),
            "{name}: {ct:?}"
        );
        assert_eq!(att.attachment_name(), Some(name));
        assert!(
            att.content_disposition().is_some_and(|d| d.is_attachment()),
            "{name}: Content-Disposition: attachment: {:?}",
            att.content_disposition()
        );
        assert_eq!(
            att.contents(),
            bytes.as_slice(),
            "{name}: the attachment's bytes survive"
        );
    }
    assert_eq!(m.attachment_count(), 2);

    // RFC 2369 List-Unsubscribe with both ways, RFC 8058 one-click.
    let lu = unfolded(m.header_raw("List-Unsubscribe").expect("List-Unsubscribe"));
    assert!(lu.contains("<mailto:unsubscribe@acme.example>"), "{lu}");
    assert!(lu.contains("<https://acme.example/unsubscribe>"), "{lu}");
    let lup = m
        .header_raw("List-Unsubscribe-Post")
        .map(unfolded)
        .expect("List-Unsubscribe-Post");
    assert_eq!(lup, "List-Unsubscribe=One-Click");

    // DKIM: signed for the From domain with our selector, and valid to dkimpy.
    let sig = m.header_raw("DKIM-Signature").expect("DKIM-Signature");
    let tags = dkim_tags(sig);
    let tag = |k: &str| {
        tags.iter()
            .find(|(t, _)| t == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {k}= in DKIM-Signature: {sig}"))
    };
    assert_eq!(
        (tag("d").as_str(), tag("s").as_str()),
        ("acme.example", "goniec"),
        "{sig}"
    );
    let signed: Vec<String> = tag("h").split(':').map(str::to_ascii_lowercase).collect();
    // RFC 6376 section 5.4.1: From is required, Subject recommended.
    for h in ["from", "subject"] {
        assert!(
            signed.iter().any(|s| s == h),
            "{h} not signed: h={signed:?}"
        );
    }
    // The checker can fail: one byte of the body changed, and dkimpy refuses it.
    let body_at = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("header/body separator")
        + 4;
    let flip = body_at
        + raw[body_at..]
            .iter()
            .position(u8::is_ascii_alphanumeric)
            .expect("a letter in the body");
    let mut tampered = raw.clone();
    tampered[flip] ^= 0x01;
    let bad = dir.path().join("tampered.eml");
    std::fs::write(&bad, &tampered).unwrap();
    let refused = dkim_verify(&bad);
    assert!(
        refused.status.code() == Some(1) && !refused.stdout.starts_with(b"OK"),
        "dkimpy accepted a message with a changed body: {}",
        out_text(&refused)
    );

    // What a receiver checks on the wire; each is its own defect, so all are
    // reported together.
    let mut problems = Vec::new();
    // RFC 5322 section 2.3: CR and LF only together. Receivers rewrite lone ones,
    // which changes the attachment and breaks the DKIM body hash (Postfix refuses
    // bare LFs outright since the SMTP smuggling fixes).
    let lone = (0..raw.len())
        .filter(|&i| {
            (raw[i] == b'\n' && (i == 0 || raw[i - 1] != b'\r'))
                || (raw[i] == b'\r' && raw.get(i + 1) != Some(&b'\n'))
        })
        .count();
    if lone > 0 {
        problems.push(format!(
            "{lone} lone LF/CR in the message as sent (RFC 5322 section 2.3 allows only CRLF)"
        ));
    }
    let verified = dkim_verify(&file);
    if !(verified.status.success() && String::from_utf8_lossy(&verified.stdout).trim() == "OK") {
        problems.push(format!(
            "dkimpy does not verify our DKIM-Signature: {}",
            out_text(&verified)
        ));
    }
    // RFC 8058 section 4: both List-Unsubscribe headers MUST be covered by a valid
    // DKIM signature, or receivers ignore the one-click header.
    for h in ["list-unsubscribe", "list-unsubscribe-post"] {
        if !signed.iter().any(|s| s == h) {
            problems.push(format!(
                "{h} is not covered by the DKIM signature (RFC 8058 section 4): h={signed:?}"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{} problem(s):\n- {}\n--- the message as aiosmtpd received it:\n{}",
        problems.len(),
        problems.join("\n- "),
        String::from_utf8_lossy(&raw)
    );

    gw.stop().await;
    peer.kill();
}
