//! Campaigns through the HTTP API on the memory backend and a real Redis: a
//! CSV audience with good and bad rows, a three-step reminder sequence with a
//! payer, a clicker, an undeliverable number and a silent recipient, pause,
//! resume and cancel, contact hours, and reports that equal an independent count.

use std::time::{Duration, Instant};

use goniec_testkit::gateway::{config_toml, parse, TestGateway, ADMIN_KEY, OTHER_KEY};
use goniec_testkit::RedisServer;
use reqwest::Method;
use serde_json::{json, Value};

/// `other` gets a link domain; SMS to +48600999… go to a connector whose
/// receipts say undeliverable; every submit is written to a file.
fn extra(dir: &std::path::Path, hours: &str) -> String {
    format!(
        r#"
allow_private_callbacks = true

[tenants.links]
domain = "https://acme.link"
{hours}

[[connectors]]
name = "ok"
kind = "stub"
channels = ["sms", "email"]
receipt_delay = "10ms"
record_to = "{ok}"

[[connectors]]
name = "bad"
kind = "stub"
channels = ["sms"]
receipt = "undeliverable"
receipt_delay = "10ms"
record_to = "{bad}"

[[routes]]
channel = "sms"
connector = "ok"

[[routes]]
channel = "sms"
prefix = "+48600999"
connector = "bad"

[[routes]]
channel = "email"
connector = "ok"
"#,
        ok = dir.join("ok.log").display(),
        bad = dir.join("bad.log").display(),
    )
}

async fn call(gw: &TestGateway, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = gw.req(method, path, OTHER_KEY);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let code = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        code,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn templates(gw: &TestGateway) {
    for t in [
        json!({"id": "sms-link", "channel": "sms",
            "text": "Dzien dobry {{name}}, zaleglosc {{amount}} zl. Zaplac: {{link:https://pay.example.com/{{invoice}}}}",
            "vars": {"name": {"default": "Kliencie"}, "amount": {"format": "amount"}, "invoice": {}}}),
        json!({"id": "sms-again", "channel": "sms", "text": "Przypominamy: {{amount}} zl.",
            "vars": {"amount": {"format": "amount"}}}),
        json!({"id": "mail", "channel": "email",
            "email": {"subject": "Zaleglosc {{amount}} zl", "html": "<p>Faktura {{invoice}}</p>"},
            "vars": {"amount": {"format": "amount"}, "invoice": {}}}),
    ] {
        let (code, body) = call(gw, Method::POST, "/v1/templates", Some(t)).await;
        assert_eq!(code, 201, "{body}");
    }
}

async fn wait_state(gw: &TestGateway, id: &str, state: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let (_, body) = call(gw, Method::GET, &format!("/v1/campaigns/{id}"), None).await;
        if body["state"] == state {
            return body;
        }
        assert!(Instant::now() < deadline, "campaign never {state}: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The messages of one client_ref, oldest first: (channel, status, id).
async fn history(gw: &TestGateway, client_ref: &str) -> Vec<(String, String, String)> {
    let (code, body) = call(
        gw,
        Method::GET,
        &format!("/v1/messages?client_ref={client_ref}"),
        None,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let mut v: Vec<(String, String, String)> = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["channel"].as_str().unwrap().to_string(),
                m["status"].as_str().unwrap().to_string(),
                m["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    v.sort_by(|a, b| a.2.cmp(&b.2));
    v
}

fn lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

async fn sequence(gw: &TestGateway, dir: &std::path::Path) {
    templates(gw).await;
    let steps = json!([
        {"channel": "sms", "template_id": "sms-link"},
        {"channel": "sms", "template_id": "sms-again", "after": "2s", "if_not": ["clicked", "paid"]},
        {"channel": "email", "template_id": "mail", "after": "1s", "if": ["undeliverable"]}
    ]);
    // A CSV as Polish Excel writes it: BOM, `;`, CRLF; two bad rows.
    let csv = "\u{feff}to;email;client_ref;name;amount;invoice\r\n\
        600100001;payer@example.com;payer;Anna;120.50;FV/1\r\n\
        600100002;clicker@example.com;clicker;;99;FV/2\r\n\
        600999003;undeliv@example.com;undeliverable;Jan;10;FV/3\r\n\
        600100004;silent@example.com;silent;Ola;5,5;FV/4\r\n\
        12;bad@example.com;badnumber;X;1;FV/5\r\n\
        600100006;nomoney@example.com;noamount;Y;;FV/6\r\n\
        600100007;Bounced@Example.com;bounced;Z;3;FV/7\r\n\
        600100008;stop@example.com;stopped;Q;4;FV/8\r\n";
    // A recipient who opted out earlier is a bad row.
    let (code, body) = call(
        gw,
        Method::POST,
        "/v1/opt-outs",
        Some(json!({"to": "+48600100008"})),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    // A suppressed address (a hard bounce earlier) is a bad row.
    let r = gw
        .req(Method::POST, "/v1/admin/suppressions", ADMIN_KEY)
        .json(&json!({"tenant": "other", "address": "bounced@example.com", "reason": "bounce"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{:?}", r.text().await);
    let (code, body) = call(
        gw,
        Method::POST,
        "/v1/campaigns",
        Some(json!({"name": "Grudzień", "steps": steps})),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["state"], "draft");
    let id = body["id"].as_str().unwrap().to_string();
    let r = gw
        .req(
            Method::PUT,
            &format!("/v1/campaigns/{id}/audience"),
            OTHER_KEY,
        )
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let up: Value = r.json().await.unwrap();
    assert_eq!(
        (
            up["rows"].as_u64(),
            up["accepted"].as_u64(),
            up["rejected"].as_u64()
        ),
        (Some(8), Some(4), Some(4)),
        "{up}"
    );
    let rejects = gw
        .req(
            Method::GET,
            &format!("/v1/campaigns/{id}/rejects"),
            OTHER_KEY,
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let rej: Vec<&str> = rejects.lines().collect();
    assert_eq!(rej[0], "line;reason;detail");
    assert!(rej[1].starts_with("6;invalid_number;"), "{rejects}");
    assert!(rej[2].starts_with("7;missing_variable;"), "{rejects}");
    assert!(rej[3].starts_with("8;suppressed;"), "{rejects}");
    assert!(rej[4].starts_with("9;opted_out;"), "{rejects}");
    assert_eq!(rej.len(), 5);

    let (code, body) = call(gw, Method::POST, &format!("/v1/campaigns/{id}/start"), None).await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = call(gw, Method::POST, &format!("/v1/campaigns/{id}/start"), None).await;
    assert_eq!(
        (code, body["code"].as_str()),
        (409, Some("invalid-state")),
        "{body}"
    );
    // A template in use cannot be deleted.
    let (code, body) = call(gw, Method::DELETE, "/v1/templates/mail", None).await;
    assert_eq!(
        (code, body["code"].as_str()),
        (409, Some("template-in-use")),
        "{body}"
    );

    // First step out: the clicker clicks, the payer pays. Both must have
    // had their first step, or a payment before it would (rightly) stop
    // the payer's sequence before anything was sent.
    let deadline = Instant::now() + Duration::from_secs(10);
    let first = loop {
        let h = history(gw, "clicker").await;
        if !h.is_empty() && !history(gw, "payer").await.is_empty() {
            break h;
        }
        assert!(Instant::now() < deadline, "first step never sent");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (_, msg) = call(
        gw,
        Method::GET,
        &format!("/v1/messages/{}", first[0].2),
        None,
    )
    .await;
    assert_eq!(msg["campaign"]["step"], 0, "{msg}");
    assert_eq!(msg["template"]["id"], "sms-link");
    let text = msg["text"].as_str().unwrap();
    assert!(
        text.starts_with("Dzien dobry Kliencie, zaleglosc 99,00 zl."),
        "{text}"
    );
    let code = text.rsplit('/').next().unwrap();
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(gw.url(&format!("/l/{code}")))
        .header(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], "https://pay.example.com/FV/2");
    let (code, body) = call(
        gw,
        Method::POST,
        &format!("/v1/campaigns/{id}/recipients/payer/events"),
        Some(json!({"type": "paid"})),
    )
    .await;
    assert_eq!((code, body["new"].as_bool()), (200, Some(true)), "{body}");
    let (code, body) = call(
        gw,
        Method::POST,
        &format!("/v1/campaigns/{id}/recipients/nobody/events"),
        Some(json!({"type": "paid"})),
    )
    .await;
    assert_eq!(code, 404, "{body}");
    let (code, body) = call(
        gw,
        Method::POST,
        &format!("/v1/campaigns/{id}/recipients/payer/events"),
        Some(json!({"type": "bought"})),
    )
    .await;
    assert_eq!(
        (code, body["field"].as_str()),
        (422, Some("type")),
        "{body}"
    );

    let done = wait_state(gw, &id, "completed", Duration::from_secs(30)).await;
    assert_eq!(done["pending"], 0);

    // Who got what.
    let payer = history(gw, "payer").await;
    let clicker = history(gw, "clicker").await;
    let undeliv = history(gw, "undeliverable").await;
    let silent = history(gw, "silent").await;
    let chans = |h: &[(String, String, String)]| {
        h.iter().map(|m| m.0.as_str()).collect::<Vec<_>>().join(",")
    };
    assert_eq!(chans(&payer), "sms", "paid: stops after the first step");
    assert_eq!(
        chans(&clicker),
        "sms",
        "clicked: the if_not step is skipped, not undeliverable"
    );
    assert_eq!(
        chans(&undeliv),
        "sms,sms,email",
        "undeliverable: the e-mail step fires"
    );
    assert_eq!(
        chans(&silent),
        "sms,sms",
        "silent: every step whose condition holds"
    );
    assert!(
        undeliv[..2].iter().all(|m| m.1 == "undeliverable"),
        "{undeliv:?}"
    );

    // The report equals a count made from the connectors' own records.
    let ok = lines(&dir.join("ok.log"));
    let bad = lines(&dir.join("bad.log"));
    let mut unique = ok.clone();
    unique.extend(bad.clone());
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        ok.len() + bad.len(),
        "no message submitted twice"
    );
    let (code, rep) = call(
        gw,
        Method::GET,
        &format!("/v1/reports/campaigns/{id}"),
        None,
    )
    .await;
    assert_eq!(code, 200, "{rep}");
    let r = &rep["report"];
    let sent_total = r["total"]["sent"].as_u64().unwrap() as usize;
    assert_eq!(sent_total, ok.len() + bad.len(), "{rep}");
    assert_eq!(r["steps"]["s0:sms"]["sent"], 4);
    assert_eq!(r["steps"]["s0:sms"]["delivered"], 3);
    assert_eq!(r["steps"]["s0:sms"]["undeliverable"], 1);
    assert_eq!(r["steps"]["s0:sms"]["clicked"], 1);
    assert_eq!(r["steps"]["s1:sms"]["sent"], 2);
    assert_eq!(r["steps"]["s1:sms"]["skipped"], 1);
    assert_eq!(r["steps"]["s2:email"]["sent"], 1);
    assert_eq!(r["steps"]["s2:email"]["skipped"], 2);
    assert_eq!(r["channels"]["sms"]["undeliverable"], bad.len());
    assert_eq!(r["paid"], 1);
    assert_eq!(r["stopped"]["paid"], 1);
    assert!(r["steps"]["s0:sms"]["median_seconds_to_delivery"]
        .as_f64()
        .is_some());
    assert_eq!(rep["payment_rate"], 0.25);
    let csv = gw
        .req(
            Method::GET,
            &format!("/v1/reports/campaigns/{id}?format=csv"),
            OTHER_KEY,
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(csv.starts_with("scope,step,channel,accepted"), "{csv}");
    assert!(csv.contains("step,s0,sms,4,0,0,4,3,1,"), "{csv}");
    let (code, ch) = call(gw, Method::GET, "/v1/reports/channels", None).await;
    assert_eq!(code, 200, "{ch}");
    assert_eq!(ch["channels"]["email"]["sent"], 1);
    let today = jiff::Timestamp::now().strftime("%Y-%m-%d").to_string();
    let (_, ch) = call(
        gw,
        Method::GET,
        &format!("/v1/reports/channels?from={today}&to={today}"),
        None,
    )
    .await;
    assert_eq!(ch["channels"]["sms"]["sent"], 6, "{ch}");
    let (code, _) = call(
        gw,
        Method::GET,
        "/v1/reports/channels?from=2026-13-01",
        None,
    )
    .await;
    assert_eq!(code, 422);
}

async fn pause_resume_cancel(gw: &TestGateway) {
    let recipients: Vec<Value> = (0..40)
        .map(|i| json!({"to": format!("+4860020{i:04}"), "client_ref": format!("p{i}"), "vars": {"amount": "1"}}))
        .collect();
    let (code, body) = call(
        gw,
        Method::POST,
        "/v1/campaigns",
        Some(
            json!({"steps": [{"channel": "sms", "template_id": "sms-again"}],
            "speed": "10/s", "recipients": recipients, "start": true}),
        ),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["upload"]["accepted"], 40, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    // Pause once a few are out (how soon the first goes depends on the
    // machine's load, not on the pacing; at 10/s all 40 take 4 s).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (_, c) = call(gw, Method::GET, &format!("/v1/campaigns/{id}"), None).await;
        if c["total"]["accepted"].as_i64().unwrap_or(0) >= 5 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "nothing sent: {c}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (code, p) = call(gw, Method::POST, &format!("/v1/campaigns/{id}/pause"), None).await;
    assert_eq!((code, p["state"].as_str()), (200, Some("paused")), "{p}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, a) = call(gw, Method::GET, &format!("/v1/campaigns/{id}"), None).await;
    let sent_a = a["total"]["accepted"].as_i64().unwrap();
    assert!((5..40).contains(&sent_a), "paced at 10/s: {a}");
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (_, b) = call(gw, Method::GET, &format!("/v1/campaigns/{id}"), None).await;
    assert_eq!(b["total"]["accepted"], sent_a, "nothing sent while paused");
    let (code, _) = call(
        gw,
        Method::POST,
        &format!("/v1/campaigns/{id}/resume"),
        None,
    )
    .await;
    assert_eq!(code, 200);
    let done = wait_state(gw, &id, "completed", Duration::from_secs(20)).await;
    assert_eq!(done["total"]["accepted"], 40);
    // The live stream of a finished campaign: one progress event, then the end.
    let r = gw
        .req(
            Method::GET,
            &format!("/v1/campaigns/{id}/stream"),
            OTHER_KEY,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let text = tokio::time::timeout(Duration::from_secs(5), r.text())
        .await
        .expect("the stream ends with the campaign")
        .unwrap();
    assert!(text.starts_with("event: progress\ndata: {"), "{text}");
    assert_eq!(text.matches("event: progress").count(), 1, "{text}");
    assert!(text.contains("\"state\":\"completed\""), "{text}");

    // Cancel: what is not sent is never sent.
    let recipients: Vec<Value> = (0..40)
        .map(|i| json!({"to": format!("+4860030{i:04}"), "vars": {"amount": "1"}}))
        .collect();
    let (_, body) = call(
        gw,
        Method::POST,
        "/v1/campaigns",
        Some(
            json!({"steps": [{"channel": "sms", "template_id": "sms-again"}],
            "speed": "10/s", "recipients": recipients, "start": true}),
        ),
    )
    .await;
    let id = body["id"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (code, c) = call(
        gw,
        Method::POST,
        &format!("/v1/campaigns/{id}/cancel"),
        None,
    )
    .await;
    assert_eq!((code, c["state"].as_str()), (200, Some("cancelled")), "{c}");
    assert_eq!(c["pending"], 0);
    let n = c["total"]["accepted"].as_i64().unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (_, c2) = call(gw, Method::GET, &format!("/v1/campaigns/{id}"), None).await;
    assert_eq!(c2["total"]["accepted"], n);
    assert!(n < 40);
    let (code, body) = call(
        gw,
        Method::POST,
        &format!("/v1/campaigns/{id}/resume"),
        None,
    )
    .await;
    assert_eq!((code, body["code"].as_str()), (409, Some("invalid-state")));
}

async fn bad_definitions(gw: &TestGateway) {
    for (def, field) in [
        (json!({"steps": []}), "steps"),
        (
            json!({"steps": [{"channel": "sms", "template_id": "nope"}]}),
            "steps[0].template_id",
        ),
        (
            json!({"steps": [{"channel": "email", "template_id": "sms-again"}]}),
            "steps[0].channel",
        ),
        (
            json!({"steps": [{"channel": "sms", "template_id": "sms-again", "at": "due_date * 3"}]}),
            "steps[0].at",
        ),
        (
            json!({"steps": [{"channel": "sms", "template_id": "sms-again", "if": ["clicked"]}]}),
            "steps[0].if",
        ),
        (
            json!({"steps": [{"channel": "sms", "template_id": "sms-again"}], "speed": "fast"}),
            "speed",
        ),
        (
            json!({"steps": [{"channel": "sms", "template_id": "sms-again"}], "end_at": "2001-01-01T00:00:00Z"}),
            "end_at",
        ),
    ] {
        let (code, body) = call(gw, Method::POST, "/v1/campaigns", Some(def.clone())).await;
        assert_eq!(code, 422, "{def} → {body}");
        assert_eq!(body["field"], field, "{def} → {body}");
    }
    let (_, list) = call(gw, Method::GET, "/v1/campaigns", None).await;
    let before = list["campaigns"].as_array().unwrap().len();
    // Idempotent creation: the same key and body give the same campaign.
    let def = json!({"steps": [{"channel": "sms", "template_id": "sms-again"}]});
    let mut ids = Vec::new();
    for _ in 0..2 {
        let r = gw
            .req(Method::POST, "/v1/campaigns", OTHER_KEY)
            .header("idempotency-key", "camp-1")
            .json(&def)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let b: Value = r.json().await.unwrap();
        ids.push(b["id"].as_str().unwrap().to_string());
    }
    assert_eq!(ids[0], ids[1]);
    let (_, list) = call(gw, Method::GET, "/v1/campaigns", None).await;
    assert_eq!(list["campaigns"].as_array().unwrap().len(), before + 1);
    let (code, body) = call(
        gw,
        Method::GET,
        "/v1/campaigns/01ARZ3NDEKTSV4RRFFQ69G5FAV",
        None,
    )
    .await;
    assert_eq!(code, 404, "{body}");
}

async fn all(url: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let gw = TestGateway::start(parse(&config_toml(url, &extra(dir.path(), "")))).await;
    sequence(&gw, dir.path()).await;
    pause_resume_cancel(&gw).await;
    bad_definitions(&gw).await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaigns_on_memory() {
    all(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaigns_on_redis() {
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    all(Some(&redis.url())).await;
}

/// Outside contact hours a campaign sends nothing and says until when it waits.
#[tokio::test]
async fn a_campaign_waits_for_contact_hours() {
    let dir = tempfile::tempdir().unwrap();
    // Closed every day but one hour that is not now (in the tenant's zone).
    let now = jiff::Zoned::now().with_time_zone(jiff::tz::TimeZone::get("Europe/Warsaw").unwrap());
    let h = (now.hour() + 12) % 24;
    let hours = format!(
        "\n[tenants.antifraud.contact]\nweekdays = \"{h:02}:00-{:02}:00\"\nsaturday = \"{h:02}:00-{:02}:00\"\nsunday = \"{h:02}:00-{:02}:00\"\nholidays = \"none\"\n",
        h + 1,
        h + 1,
        h + 1
    );
    let toml = config_toml(None, &extra(dir.path(), &hours)).replace(
        "[antifraud]\nenabled = false",
        "[antifraud]\nenabled = true",
    );
    let gw = TestGateway::start(parse(&toml)).await;
    templates(&gw).await;
    let (code, body) = call(
        &gw,
        Method::POST,
        "/v1/campaigns",
        Some(
            json!({"steps": [{"channel": "sms", "template_id": "sms-again"}],
            "recipients": [{"to": "+48600400001", "vars": {"amount": "1"}}], "start": true}),
        ),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (_, p) = call(&gw, Method::GET, &format!("/v1/campaigns/{id}"), None).await;
    assert_eq!(p["waiting"]["reason"], "contact_hours", "{p}");
    assert_eq!(p["total"]["accepted"], 0, "{p}");
    assert_eq!(p["pending"], 1);
    let until: jiff::Timestamp = p["waiting"]["until"].as_str().unwrap().parse().unwrap();
    let local = until.to_zoned(jiff::tz::TimeZone::get("Europe/Warsaw").unwrap());
    assert_eq!((local.hour(), local.minute()), (h, 0), "{p}");
    assert!(lines(&dir.path().join("ok.log")).is_empty());
    gw.stop().await;
}

/// A tenant whose rate lets fewer messages through at once than a batch holds:
/// batches shrink to its burst instead of being refused for ever.
#[tokio::test]
async fn a_tenant_rate_below_the_batch_size_paces_the_campaign() {
    let dir = tempfile::tempdir().unwrap();
    let extra = format!("rate = \"20/s\"\n{}", extra(dir.path(), ""));
    let gw = TestGateway::start(parse(&config_toml(None, &extra))).await;
    templates(&gw).await;
    let recipients: Vec<Value> = (0..60)
        .map(|i| json!({"to": format!("+4860050{i:04}"), "vars": {"amount": "1"}}))
        .collect();
    let (code, body) = call(
        &gw,
        Method::POST,
        "/v1/campaigns",
        Some(
            json!({"steps": [{"channel": "sms", "template_id": "sms-again"}],
            "recipients": recipients, "start": true}),
        ),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    let done = wait_state(&gw, &id, "completed", Duration::from_secs(20)).await;
    assert_eq!(done["total"]["accepted"], 60, "{done}");
    gw.stop().await;
}
