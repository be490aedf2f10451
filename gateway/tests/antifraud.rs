//! Anti-fraud and contact policy in the pipeline, on a real Redis: verdicts at the
//! API, held messages released by an operator and delivered, the blocklist reloaded
//! while running, caps shared by two gateway instances, opt-outs, sender pools.

use std::time::Duration;

use goniec_testkit::gateway::{
    config_toml_with, parse, TestGateway, ACME_KEY, ADMIN_KEY, OTHER_KEY, STUB_SMS,
};
use goniec_testkit::RedisServer;
use reqwest::Method;
use serde_json::{json, Value};

/// Anti-fraud on, contact hours open around the clock (the hours themselves are
/// tested below and in the crate), plus the test's own keys.
fn antifraud(blocklist: &std::path::Path, extra: &str) -> String {
    format!(
        r#"[antifraud]
blocklist = "{}"
reload_every = "100ms"
key_salt = "test-salt"

[antifraud.defaults]
sender_pools = [{{ name = "pool", numbers = ["+48500100201", "+48500100202", "+48500100203"], strategy = "sticky" }}]

[antifraud.defaults.contact]
weekdays = "00:00-24:00"
saturday = "00:00-24:00"
sunday = "00:00-24:00"
holidays = "none"
max_per_day = 3
{extra}
"#,
        blocklist.display()
    )
}

fn blocklist_file(domains: &str) -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), domains).unwrap();
    f
}

async fn start(redis: &RedisServer, af: &str) -> TestGateway {
    let gw = TestGateway::start(parse(&config_toml_with(Some(&redis.url()), af, STUB_SMS))).await;
    gw.wait_ready(200, Duration::from_secs(10)).await;
    gw
}

fn sms(to: &str, text: &str) -> Value {
    json!({"channel": "sms", "to": to, "text": text})
}

fn reasons(body: &Value) -> Vec<String> {
    body["reasons"]
        .as_array()
        .map(|a| a.iter().map(|r| r.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

async fn admin(gw: &TestGateway, method: Method, path: &str) -> (u16, Value) {
    let r = gw.req(method, path, ADMIN_KEY).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn phishing_links_are_rejected_shorteners_held_and_released_by_an_operator() {
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    let list = blocklist_file("# CERT Polska\nfake-bank.pl\n");
    let gw = start(&redis, &antifraud(list.path(), "")).await;

    // A link to a subdomain of a listed domain: rejected, stored as such, never sent.
    let (code, r) = gw
        .post(
            "/v1/messages",
            &sms(
                "+48601000001",
                "Zaległość 120 zł, zapłać: https://login.fake-bank.pl/x",
            ),
        )
        .await;
    assert_eq!(code, 422, "{r}");
    assert_eq!(r["code"], "rejected", "{r}");
    assert_eq!(reasons(&r), ["blocklisted_domain"]);
    let id = r["id"].as_str().unwrap().to_string();
    let (_, m) = gw.get(&format!("/v1/messages/{id}")).await;
    assert_eq!(m["status"], "rejected", "{m}");

    // Near miss: a different domain that merely ends the same way is fine.
    let (code, r) = gw
        .post(
            "/v1/messages",
            &sms("+48601000002", "Zapłać: https://notfake-bank.pl/x"),
        )
        .await;
    assert_eq!(code, 202, "{r}");
    assert_eq!(r["status"], "queued", "{r}");

    // A public shortener: held for an operator, not sent.
    let (code, r) = gw
        .post(
            "/v1/messages",
            &sms("+48601000003", "Zapłać tutaj: bit.ly/3abc"),
        )
        .await;
    assert_eq!((code, r["status"].as_str()), (202, Some("held")), "{r}");
    assert_eq!(reasons(&r), ["url_shortener"]);
    let held_id = r["id"].as_str().unwrap().to_string();
    let (code, r) = gw
        .post(
            "/v1/messages",
            &sms("+48601000004", "Inny link: tinyurl.com/xyz"),
        )
        .await;
    assert_eq!(code, 202, "{r}");
    let dropped_id = r["id"].as_str().unwrap().to_string();

    let (code, list) = admin(&gw, Method::GET, "/v1/admin/held").await;
    assert_eq!(code, 200, "{list}");
    let ids: Vec<&str> = list["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [held_id.as_str(), dropped_id.as_str()]);
    assert_eq!(list["entries"][0]["reasons"], json!(["url_shortener"]));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, m) = gw.get(&format!("/v1/messages/{held_id}")).await;
    assert_eq!(m["status"], "held", "a held message is not sent: {m}");

    // The operator releases one (delivered) and drops the other (rejected).
    let (code, r) = admin(
        &gw,
        Method::POST,
        &format!("/v1/admin/held/{held_id}/release"),
    )
    .await;
    assert_eq!(code, 200, "{r}");
    let m = gw
        .wait_status(&held_id, Duration::from_secs(10), |s| s == "delivered")
        .await;
    let trail: Vec<&str> = m["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(trail[..3], ["accepted", "held", "scheduled"], "{m}");
    let (code, _) = admin(
        &gw,
        Method::POST,
        &format!("/v1/admin/held/{dropped_id}/drop"),
    )
    .await;
    assert_eq!(code, 200);
    let (_, m) = gw.get(&format!("/v1/messages/{dropped_id}")).await;
    assert_eq!(m["status"], "rejected");
    // Decided once: a second decision is refused and changes nothing.
    let (code, r) = admin(
        &gw,
        Method::POST,
        &format!("/v1/admin/held/{dropped_id}/release"),
    )
    .await;
    assert_eq!((code, r["code"].as_str()), (409, Some("not-held")), "{r}");
    let (code, _) = admin(
        &gw,
        Method::POST,
        &format!("/v1/admin/held/{held_id}/launch"),
    )
    .await;
    assert_eq!(code, 404);
    // Tenants cannot decide.
    let r = gw
        .req(
            Method::POST,
            &format!("/v1/admin/held/{dropped_id}/release"),
            ACME_KEY,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    gw.stop().await;
}

#[tokio::test]
async fn the_blocklist_is_reloaded_while_running() {
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    let list = blocklist_file("fake-bank.pl\n");
    let gw = start(&redis, &antifraud(list.path(), "")).await;
    let (code, _) = gw
        .post(
            "/v1/messages",
            &sms("+48601000010", "Zapłać: nowy-phishing.pl/a"),
        )
        .await;
    assert_eq!(code, 202);
    // The file changes: the new domain is refused without a restart.
    std::fs::write(list.path(), "fake-bank.pl\nnowy-phishing.pl\n").unwrap();
    let mut code = 0;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (c, _) = gw
            .post(
                "/v1/messages",
                &sms("+48601000011", &format!("Zapłać: nowy-phishing.pl/{code}")),
            )
            .await;
        code = c;
        if c == 422 {
            break;
        }
    }
    assert_eq!(code, 422, "the changed blocklist was not picked up");
    gw.stop().await;
}

#[tokio::test]
async fn sighup_reloads_the_blocklist() {
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    let list = blocklist_file("fake-bank.pl\n");
    // No polling to speak of: only the signal can reload it.
    let af =
        antifraud(list.path(), "").replace("reload_every = \"100ms\"", "reload_every = \"1h\"");
    let gw = start(&redis, &af).await;
    std::fs::write(list.path(), "inny-phishing.pl\n").unwrap();
    // bash's built-in kill: a minimal system may have no /bin/kill (procps).
    let status = std::process::Command::new("bash")
        .args(["-c", &format!("kill -HUP {}", std::process::id())])
        .status()
        .expect("bash");
    assert!(status.success());
    let mut code = 0;
    for i in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (c, _) = gw
            .post(
                "/v1/messages",
                &sms("+48601000020", &format!("Zapłać: inny-phishing.pl/{i}")),
            )
            .await;
        code = c;
        if c == 422 {
            break;
        }
    }
    assert_eq!(code, 422, "SIGHUP did not reload the blocklist");
    gw.stop().await;
}

/// Two gateways on one Redis share the frequency caps: 3 a day, wherever sent.
#[tokio::test]
async fn frequency_caps_are_shared_by_two_instances() {
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    let list = blocklist_file("");
    let af = antifraud(list.path(), "");
    let cfg = parse(&config_toml_with(Some(&redis.url()), &af, STUB_SMS));
    let a = TestGateway::start(cfg.clone()).await;
    let b = TestGateway::start(cfg).await;
    a.wait_ready(200, Duration::from_secs(10)).await;
    b.wait_ready(200, Duration::from_secs(10)).await;
    let to = "+48601000030";
    for (i, gw) in [&a, &b, &a].into_iter().enumerate() {
        let (code, r) = gw
            .post("/v1/messages", &sms(to, &format!("Przypomnienie {i}")))
            .await;
        assert_eq!(code, 202, "message {i}: {r}");
    }
    let (code, r) = b.post("/v1/messages", &sms(to, "Przypomnienie 3")).await;
    assert_eq!(code, 422, "{r}");
    assert_eq!(reasons(&r), ["frequency_cap"]);
    // Another recipient is not affected; the same text twice is a duplicate.
    let (code, _) = b
        .post("/v1/messages", &sms("+48601000031", "Przypomnienie 0"))
        .await;
    assert_eq!(code, 202);
    let (code, r) = a
        .post("/v1/messages", &sms("+48601000031", "Przypomnienie 0"))
        .await;
    assert_eq!(
        (code, reasons(&r)),
        (422, vec!["duplicate".to_string()]),
        "{r}"
    );

    // At the same moment: 24 requests to one new recipient, half through each
    // instance, all read 0 of 3 before any is stored. Exactly three get in;
    // and of 12 copies of one text to another recipient, exactly one.
    let burst = |to: &'static str, same_text: bool| {
        let mut set = tokio::task::JoinSet::new();
        let client = reqwest::Client::new();
        for i in 0..if same_text { 12 } else { 24 } {
            let url = if i % 2 == 0 {
                a.url("/v1/messages")
            } else {
                b.url("/v1/messages")
            };
            let text = if same_text {
                "Wezwanie do zapłaty".to_string()
            } else {
                format!("Wezwanie {i}")
            };
            let req = client.post(url).bearer_auth(ACME_KEY).json(&sms(to, &text));
            set.spawn(async move {
                let r = req.send().await.expect("request");
                let code = r.status().as_u16();
                (code, r.json::<Value>().await.unwrap_or(Value::Null))
            });
        }
        set.join_all()
    };
    let (caps, dups) = tokio::join!(burst("+48601000032", false), burst("+48601000033", true));
    for (answers, want, reason) in [(caps, 3, "frequency_cap"), (dups, 1, "duplicate")] {
        let accepted = answers.iter().filter(|(c, _)| *c == 202).count();
        assert_eq!(accepted, want, "{answers:?}");
        for (code, r) in answers.iter().filter(|(c, _)| *c != 202) {
            assert_eq!((*code, reasons(r)), (422, vec![reason.to_string()]), "{r}");
        }
    }
    // A batch with the same recipient five times: the cap holds inside it too.
    let items: Vec<Value> = (0..5)
        .map(|i| sms("+48601000034", &format!("Rata {i}")))
        .collect();
    let (code, r) = a
        .post("/v1/messages/batch", &json!({ "messages": items }))
        .await;
    assert_eq!((code, &r["accepted"]), (207, &json!(3)), "{r}");
    let got: Vec<Value> = r["results"]
        .as_array()
        .unwrap_or_else(|| panic!("{r}"))
        .iter()
        .map(|m| match m.get("error") {
            Some(e) => e["reasons"].clone(),
            None => json!(m["id"].is_string()),
        })
        .collect();
    let cap = json!(["frequency_cap"]);
    assert_eq!(
        got,
        [json!(true), json!(true), json!(true), cap.clone(), cap],
        "{r}"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn opted_out_recipients_are_rejected_until_they_opt_in() {
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    let list = blocklist_file("");
    let gw = start(&redis, &antifraud(list.path(), "")).await;
    let (code, r) = gw.post("/v1/opt-outs", &json!({"to": "601 000 040"})).await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["to"], "+48601000040", "normalised like messages");
    let (code, r) = gw
        .post("/v1/messages", &sms("+48601000040", "Dzień dobry"))
        .await;
    assert_eq!(
        (code, reasons(&r)),
        (422, vec!["opted_out".to_string()]),
        "{r}"
    );
    // Bad input is refused and changes nothing.
    let (code, r) = gw
        .post("/v1/opt-outs", &json!({"to": "not a number"}))
        .await;
    assert_eq!((code, r["field"].as_str()), (422, Some("to")), "{r}");
    let r = gw
        .req(Method::DELETE, "/v1/opt-outs/+48601000040", ACME_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let (code, r) = gw
        .post("/v1/messages", &sms("+48601000040", "Dzień dobry"))
        .await;
    assert_eq!(code, 202, "{r}");
    gw.stop().await;
}

/// Impersonation: a tenant that registered no senders may not choose `from`
/// (the connector's default is used), and a tenant's e-mail senders are its
/// registered addresses (`name@domain`) or domains (`@domain`), checked with or
/// without anti-fraud. A CRLF in an e-mail `from` is refused at the API.
#[tokio::test]
async fn only_registered_senders_may_be_named_even_with_anti_fraud_off() {
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    for af in ["[antifraud]\nenabled = false\n", "[antifraud]\nenabled = true\n[antifraud.defaults.contact]\nweekdays = \"00:00-24:00\"\nsaturday = \"00:00-24:00\"\nsunday = \"00:00-24:00\"\nholidays = \"none\"\n"] {
        let extra = r#"senders = ["ACME", "windykacja@acme.example", "@faktury.acme.example"]

[[connectors]]
name = "ok"
kind = "stub"
channels = ["sms", "email"]
receipt_delay = "10ms"

[[routes]]
channel = "sms"
connector = "ok"

[[routes]]
channel = "email"
connector = "ok"
"#;
        let gw = TestGateway::start(parse(&config_toml_with(Some(&redis.url()), af, extra))).await;
        gw.wait_ready(200, Duration::from_secs(10)).await;
        let post = |key: &'static str, body: Value| {
            let gw = &gw;
            async move {
                let r = gw.req(Method::POST, "/v1/messages", key).json(&body).send().await.unwrap();
                (r.status().as_u16(), r.json::<Value>().await.unwrap())
            }
        };
        let mail = |from: &str, n: u32| {
            json!({"channel": "email", "to": format!("jan{n}@example.com"), "from": from,
                   "text": "Dzień dobry", "email": {"subject": "Wyciąg"}})
        };
        // `acme` registered nothing: no sender of its choosing, on any channel.
        let mut fake = sms("+48601000051", "Twoje konto zostanie zablokowane");
        fake["from"] = json!("PKO-BANK-FAKE");
        let (code, r) = post(ACME_KEY, fake).await;
        assert_eq!((code, reasons(&r)), (422, vec!["sender_not_registered".to_string()]), "{af}: {r}");
        let (code, r) = post(ACME_KEY, mail("security@pkobp.pl", 1)).await;
        assert_eq!((code, reasons(&r)), (422, vec!["sender_not_registered".to_string()]), "{af}: {r}");
        let (code, r) = post(ACME_KEY, sms("+48601000052", "Bez nadawcy")).await;
        assert_eq!(code, 202, "no `from`: the connector's default sender: {r}");
        // `other` registered a name, an address and a domain.
        let mut named = sms("+48601000053", "Przypomnienie");
        named["from"] = json!("acme");
        let (code, r) = post(OTHER_KEY, named).await;
        assert_eq!(code, 202, "{af}: {r}");
        for (n, from) in ["windykacja@acme.example", "Faktury <noreply@faktury.acme.example>"].iter().enumerate() {
            let (code, r) = post(OTHER_KEY, mail(from, 10 + n as u32)).await;
            assert_eq!(code, 202, "{af}: {from}: {r}");
        }
        for (n, from) in ["security@pkobp.pl", "x@sub.faktury.acme.example", "ACME"].iter().enumerate() {
            let (code, r) = post(OTHER_KEY, mail(from, 20 + n as u32)).await;
            let refused = code == 422 && (reasons(&r) == ["sender_not_registered"] || r["code"] == "invalid-sender");
            assert!(refused, "{af}: {from}: {code} {r}");
        }
        let (code, r) = post(OTHER_KEY, mail("windykacja@acme.example\r\nBcc: all@acme.example", 30)).await;
        assert_eq!((code, r["code"].as_str(), r["field"].as_str()), (422, Some("invalid-sender"), Some("from")), "{r}");
        gw.stop().await;
    }
}

/// An opt-out is a legal duty, not a fraud rule: with anti-fraud off it still
/// refuses the recipient (single and batch), until they opt in again. STOP
/// replies and RCS UNSUBSCRIBE store the same opt-out, so this covers them too.
#[tokio::test]
async fn opt_outs_apply_with_anti_fraud_off() {
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    let gw = start(&redis, "[antifraud]\nenabled = false\n").await;
    let (code, r) = gw
        .post("/v1/opt-outs", &json!({"to": "+48601000041"}))
        .await;
    assert_eq!(code, 200, "{r}");
    let (code, r) = gw
        .post("/v1/messages", &sms("+48601000041", "Dzień dobry"))
        .await;
    assert_eq!(
        (code, reasons(&r)),
        (422, vec!["opted_out".to_string()]),
        "{r}"
    );
    let (code, r) = gw
        .post(
            "/v1/messages/batch",
            &json!({"messages": [sms("+48601000041", "a"), sms("+48601000042", "b")]}),
        )
        .await;
    assert_eq!(code, 207, "{r}");
    assert_eq!(r["accepted"], 1, "{r}");
    assert_eq!(
        r["results"][0]["error"]["reasons"],
        json!(["opted_out"]),
        "{r}"
    );
    // Anti-fraud stays off for everything else: no verdicts are counted.
    let (code, r) = gw
        .post("/v1/messages", &sms("+48601000043", "https://bit.ly/x"))
        .await;
    assert_eq!((code, r["status"].as_str()), (202, Some("queued")), "{r}");
    let r = gw
        .req(Method::DELETE, "/v1/opt-outs/+48601000041", ACME_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let (code, r) = gw
        .post("/v1/messages", &sms("+48601000041", "Dzień dobry"))
        .await;
    assert_eq!(code, 202, "{r}");
    gw.stop().await;
}

#[tokio::test]
async fn pools_pick_a_sticky_sender_and_unregistered_senders_are_rejected() {
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    let list = blocklist_file("");
    let gw = start(&redis, &antifraud(list.path(), "")).await;
    let mut senders = Vec::new();
    for i in 0..2 {
        let mut body = sms("+48601000050", &format!("Wiadomość {i}"));
        body["from"] = json!("pool");
        let (code, r) = gw.post("/v1/messages", &body).await;
        assert_eq!(code, 202, "{r}");
        let (_, m) = gw
            .get(&format!("/v1/messages/{}", r["id"].as_str().unwrap()))
            .await;
        senders.push(m["from"].as_str().unwrap().to_string());
    }
    assert!(senders[0].starts_with("+4850010020"), "{senders:?}");
    assert_eq!(
        senders[0], senders[1],
        "sticky: the same recipient sees the same number"
    );

    gw.stop().await;

    // Tenant `other` registers ACME (written after its table in the test config).
    let extra = format!("senders = [\"ACME\"]\n{STUB_SMS}");
    let gw = TestGateway::start(parse(&config_toml_with(
        Some(&redis.url()),
        &antifraud(list.path(), ""),
        &extra,
    )))
    .await;
    let send = |from: &'static str| {
        let gw = &gw;
        async move {
            let mut body = sms("+48601000051", &format!("Od {from}"));
            body["from"] = json!(from);
            let r = gw
                .req(Method::POST, "/v1/messages", OTHER_KEY)
                .json(&body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (code, r) = send("NotOurs").await;
    assert_eq!(
        (code, reasons(&r)),
        (422, vec!["sender_not_registered".to_string()]),
        "{r}"
    );
    let (code, r) = send("acme").await;
    assert_eq!(code, 202, "registered (case-insensitive): {r}");
    let (code, r) = send("pool").await;
    assert_eq!(code, 202, "a pool counts as registered: {r}");
    gw.stop().await;
}

/// Over a tenant's message or request rate: 429 with Retry-After, nothing stored.
#[tokio::test]
async fn over_the_tenant_rates_the_answer_is_429_with_retry_after() {
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    let list = blocklist_file("");
    // Tenant `other` (its keys come right after its table in the test config).
    let extra = format!("rate = \"2/min\"\nrequest_rate = \"4/min\"\n{STUB_SMS}");
    let gw = TestGateway::start(parse(&config_toml_with(
        Some(&redis.url()),
        &antifraud(list.path(), ""),
        &extra,
    )))
    .await;
    let post = |i: u32| {
        let gw = &gw;
        async move {
            gw.req(Method::POST, "/v1/messages", OTHER_KEY)
                .json(&sms(&format!("+4860100007{i}"), "Dzień dobry"))
                .send()
                .await
                .unwrap()
        }
    };
    for i in 0..2 {
        assert_eq!(post(i).await.status().as_u16(), 202);
    }
    let r = post(2).await;
    assert_eq!(r.status().as_u16(), 429);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
    let body: Value = r.json().await.unwrap();
    assert!(
        body["detail"].as_str().unwrap().contains("message rate"),
        "{body}"
    );
    // The request rate counts every call: the 4th request of the minute is refused.
    let r = gw
        .req(Method::GET, "/v1/messages?to=%2B48601000070", OTHER_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = gw
        .req(Method::GET, "/v1/messages?to=%2B48601000070", OTHER_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let body: Value = r.json().await.unwrap();
    assert!(
        body["detail"].as_str().unwrap().contains("request rate"),
        "{body}"
    );
    gw.stop().await;
}

/// Outside the contact hours a collection message is scheduled, not refused.
#[tokio::test]
async fn outside_contact_hours_messages_are_scheduled_for_the_next_window() {
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    let list = blocklist_file("");
    // A one-hour window that is surely not now in Warsaw.
    let hour = jiff::Timestamp::now()
        .in_tz("Europe/Warsaw")
        .unwrap()
        .hour();
    let window = if (2..=5).contains(&hour) {
        "15:00-16:00"
    } else {
        "03:00-04:00"
    };
    let af = antifraud(list.path(), "").replace("\"00:00-24:00\"", &format!("\"{window}\""));
    let gw = start(&redis, &af).await;
    let (code, r) = gw
        .post("/v1/messages", &sms("+48601000060", "Dzień dobry"))
        .await;
    assert_eq!(
        (code, r["status"].as_str()),
        (202, Some("scheduled")),
        "{r}"
    );
    assert_eq!(reasons(&r), ["outside_contact_hours"]);
    let send_at: jiff::Timestamp = r["send_at"].as_str().unwrap().parse().unwrap();
    let local = send_at.in_tz("Europe/Warsaw").unwrap();
    assert_eq!(
        (local.hour(), local.minute()),
        (window[..2].parse().unwrap(), 0),
        "the start of the next window: {local}"
    );
    assert!(send_at > jiff::Timestamp::now());
    gw.stop().await;
}

/// The e-mail suppression list: an operator adds an address, the next e-mail to it
/// is rejected as `suppressed`, and after removal it goes out again.
#[tokio::test]
async fn suppressed_addresses_are_rejected_until_an_operator_removes_them() {
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    let list = blocklist_file("");
    let connectors = format!(
        "{STUB_SMS}\n[[connectors]]\nname = \"mail\"\nkind = \"stub\"\nchannels = [\"email\"]\n\n[[routes]]\nchannel = \"email\"\nconnector = \"mail\"\n"
    );
    let gw = TestGateway::start(parse(&config_toml_with(
        Some(&redis.url()),
        &antifraud(list.path(), ""),
        &connectors,
    )))
    .await;
    gw.wait_ready(200, Duration::from_secs(10)).await;
    let email = |n: u32| {
        json!({"channel": "email", "to": "Jan.Kowalski@Example.com", "text": format!("Wyciąg {n}"),
               "email": {"subject": format!("Wyciąg nr {n}")}})
    };
    let admin_json = |method: Method, path: &'static str, body: Value| {
        let gw = &gw;
        async move {
            let r = gw
                .req(method, path, ADMIN_KEY)
                .json(&body)
                .send()
                .await
                .unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (code, r) = gw.post("/v1/messages", &email(1)).await;
    assert_eq!(code, 202, "{r}");

    let (code, r) = admin_json(
        Method::POST,
        "/v1/admin/suppressions",
        json!({"tenant": "acme", "address": "jan.kowalski@example.com", "reason": "5.1.1 user unknown"}),
    )
    .await;
    assert_eq!(code, 200, "{r}");
    let (code, r) = gw.post("/v1/messages", &email(2)).await;
    assert_eq!(
        (code, reasons(&r)),
        (422, vec!["suppressed".to_string()]),
        "{r}"
    );
    let (_, m) = gw
        .get(&format!("/v1/messages/{}", r["id"].as_str().unwrap()))
        .await;
    assert_eq!(m["status"], "rejected");

    let (code, r) = admin(&gw, Method::GET, "/v1/admin/suppressions?tenant=acme").await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(
        r["entries"][0]["address"], "jan.kowalski@example.com",
        "{r}"
    );
    assert_eq!(r["entries"][0]["reason"], "5.1.1 user unknown");
    // Bad input is refused and changes nothing.
    let (code, r) = admin_json(
        Method::POST,
        "/v1/admin/suppressions",
        json!({"tenant": "acme", "address": "not an address"}),
    )
    .await;
    assert_eq!((code, r["field"].as_str()), (422, Some("address")), "{r}");
    let (code, _) = admin_json(
        Method::POST,
        "/v1/admin/suppressions",
        json!({"tenant": "nobody", "address": "x@example.com"}),
    )
    .await;
    assert_eq!(code, 404);

    let path = "/v1/admin/suppressions/acme/jan.kowalski@example.com";
    assert_eq!(admin(&gw, Method::DELETE, path).await.0, 200);
    assert_eq!(admin(&gw, Method::DELETE, path).await.0, 404);
    let (code, r) = gw.post("/v1/messages", &email(3)).await;
    assert_eq!(code, 202, "{r}");
    gw.stop().await;
}

/// The places a message reserved under its caps are given back when its
/// request fails before the store write (here its tracked link cannot be
/// stored), and kept when the store write itself fails (a failed write may have
/// stored some messages, so giving them back could let a retry through the
/// duplicate check). The faults are Redis's own: an ACL rule takes a command
/// away from the user the gateway connects as, then gives it back. Also: a
/// templated reminder with a tracked link sent twice is a duplicate.
#[tokio::test]
async fn reserved_places_are_given_back_only_before_the_store_write() {
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    let list = blocklist_file("");
    let af = antifraud(list.path(), "");
    // The `other` tenant gets a link domain (`extra` goes into its section).
    let extra = format!("[tenants.links]\ndomain = \"https://acme.link/\"\n{STUB_SMS}");
    let gw = TestGateway::start(parse(&config_toml_with(Some(&redis.url()), &af, &extra))).await;
    gw.wait_ready(200, Duration::from_secs(10)).await;
    let client = redis::Client::open(redis.url()).unwrap();
    let admin = client.get_multiplexed_async_connection().await.unwrap();
    let acl = |rule: &'static str| {
        let mut c = admin.clone();
        async move {
            let ok: String = redis::cmd("ACL")
                .arg("SETUSER")
                .arg("default")
                .arg(rule)
                .query_async(&mut c)
                .await
                .unwrap();
            assert_eq!(ok, "OK");
        }
    };
    let send = |body: Value| {
        let req = gw.req(Method::POST, "/v1/messages", OTHER_KEY).json(&body);
        async move {
            let r = req.send().await.unwrap();
            let code = r.status().as_u16();
            (code, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let template = json!({"id": "wezwanie", "channel": "sms", "name": "pay",
        "text": "Zaplac: {{link:https://pay.example.com/{{invoice}}}}", "vars": {"invoice": {}}});
    let r = gw
        .req(Method::POST, "/v1/templates", OTHER_KEY)
        .json(&template)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let linked = json!({"channel": "sms", "to": "+48601000040", "template_id": "wezwanie",
        "vars": {"invoice": "FV/1"}});

    // The links are written with PEXPIREAT: without it, the request fails after
    // its reservation and before its messages are written.
    acl("-pexpireat").await;
    let (code, body) = send(linked.clone()).await;
    assert_eq!(code, 503, "{body}");
    acl("+pexpireat").await;
    // Its place under the cap of 3 a day was given back: the retry and two
    // more (other invoices: not duplicates) get in, the fourth does not.
    let invoice = |to: &str, n: u32| {
        let mut m = linked.clone();
        m["to"] = json!(to);
        m["vars"]["invoice"] = json!(format!("FV/{n}"));
        m
    };
    for i in 1..4 {
        let (code, body) = send(invoice("+48601000040", i)).await;
        assert_eq!(
            code, 202,
            "message {i}: the failed try kept its place: {body}"
        );
    }
    let (code, body) = send(invoice("+48601000040", 4)).await;
    assert_eq!(
        (code, reasons(&body)),
        (422, vec!["frequency_cap".into()]),
        "{body}"
    );
    // The same reminder twice is a duplicate, although each send gets a short
    // link of its own: the check compares the text with the links' targets.
    let (code, body) = send(invoice("+48601000043", 9)).await;
    assert_eq!(code, 202, "{body}");
    let (code, body) = send(invoice("+48601000043", 9)).await;
    assert_eq!(
        (code, reasons(&body)),
        (422, vec!["duplicate".into()]),
        "{body}"
    );

    // The messages are written with XADD in one transaction: without it the
    // write fails (EXECABORT, nothing stored), after the reservation.
    let plain = sms("+48601000041", "Przypomnienie o platnosci");
    acl("-xadd").await;
    let (code, body) = send(plain.clone()).await;
    assert_eq!(code, 503, "{body}");
    acl("+xadd").await;
    // A failed write keeps its places: the retry counts as the same text again.
    let (code, body) = send(plain).await;
    assert_eq!(
        (code, reasons(&body)),
        (422, vec!["duplicate".into()]),
        "{body}"
    );
    // Both rules restored: everything accepted was delivered.
    let (code, body) = gw
        .post("/v1/messages", &sms("+48601000042", "Inny tekst"))
        .await;
    assert_eq!(code, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    gw.wait_status(&id, Duration::from_secs(10), |s| s == "delivered")
        .await;
    gw.stop().await;
}
