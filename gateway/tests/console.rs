//! The operator console over HTTP, on a real Redis: the login exchanges an
//! operator key (never a tenant's) for an HttpOnly, SameSite=Strict session
//! cookie; the console's JSON and event stream refuse a tenant key, no key and
//! an expired session; actions made with the cookie need the session's CSRF
//! token and a same-site origin; logout ends the session; and every action
//! (pause and resume a connector or tenant, release and drop held messages,
//! requeue and discard dead letters) does what it says and is in the admin
//! log with who did it. The browser itself is driven in `tests/console_browser.py`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use goniec_testkit::gateway::{
    config_toml_with, parse, TestGateway, ACME_KEY, ADMIN_KEY, ANTIFRAUD_OPEN_HOURS, OTHER_KEY,
    STUB_SMS,
};
use goniec_testkit::RedisServer;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Besides the stub `ok` (the default route): `flaky`, whose every submit
/// fails for a while, for numbers starting +48509.
const FLAKY: &str = r#"
[[connectors]]
name = "flaky"
kind = "stub"
channels = ["sms"]
transient_every = 1

[[routes]]
channel = "sms"
connector = "flaky"
prefix = "+48509"
"#;

async fn start(redis: &RedisServer, session: &str) -> TestGateway {
    let toml = config_toml_with(
        Some(&redis.url()),
        ANTIFRAUD_OPEN_HOURS,
        &format!("{STUB_SMS}{FLAKY}"),
    )
    .replace(
        "[admin]\n",
        &format!("[admin]\nconsole_session = \"{session}\"\n"),
    );
    let gw = TestGateway::start(parse(&toml)).await;
    gw.wait_ready(200, Duration::from_secs(10)).await;
    gw
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A logged-in console: its cookie and CSRF token.
struct Session {
    cookie: String,
    csrf: String,
}

async fn login(gw: &TestGateway, key: &str, name: &str) -> reqwest::Response {
    client()
        .post(gw.url("/console/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("key={key}&name={name}"))
        .send()
        .await
        .unwrap()
}

async fn log_in(gw: &TestGateway, name: &str) -> Session {
    let r = login(gw, ADMIN_KEY, name).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/console");
    let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
    for part in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(set.contains(part), "{set}");
    }
    let cookie = set.split(';').next().unwrap().to_string();
    let page = client()
        .get(gw.url("/console"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    let html = page.text().await.unwrap();
    let csrf = html
        .split("name=\"csrf-token\" content=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("the page carries the CSRF token")
        .to_string();
    assert!(html.contains(name), "who is logged in is shown");
    // Every asset comes from the gateway itself.
    assert!(!html.contains("http://") && !html.contains("https://"));
    Session { cookie, csrf }
}

impl Session {
    async fn call(&self, gw: &TestGateway, method: Method, path: &str) -> (u16, Value) {
        let r = client()
            .request(method, gw.url(path))
            .header("cookie", &self.cookie)
            .header("x-csrf-token", &self.csrf)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn overview(&self, gw: &TestGateway) -> Value {
        let (code, v) = self.call(gw, Method::GET, "/v1/admin/overview").await;
        assert_eq!(code, 200, "{v}");
        v
    }
}

async fn audit(gw: &TestGateway) -> Vec<Value> {
    let r = gw
        .req(Method::GET, "/v1/admin/audit?limit=1000", ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v["entries"].as_array().unwrap().clone()
}

fn audited(log: &[Value], who: &str, action: &str, target: &str) -> bool {
    log.iter().any(|e| {
        e["who"].as_str().is_some_and(|w| w.starts_with(who))
            && e["action"] == action
            && e["target"] == target
            && e["at"].as_str().is_some_and(|a| a.contains('T'))
    })
}

/// The first `event: overview` of the stream, with the session's cookie.
async fn first_event(gw: &TestGateway, headers: &[(&str, &str)]) -> (u16, String) {
    let mut req = client().get(gw.url("/v1/admin/stream"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut r = req.send().await.unwrap();
    let code = r.status().as_u16();
    if code != 200 {
        return (code, r.text().await.unwrap_or_default());
    }
    let mut buf = String::new();
    while !buf.contains("\n\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), r.chunk())
            .await
            .expect("an event within 5 s")
            .unwrap()
            .expect("more of the stream");
        buf.push_str(&String::from_utf8_lossy(&chunk));
    }
    (code, buf)
}

#[tokio::test]
async fn login_sessions_csrf_expiry_and_refusals() {
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    let gw = start(&redis, "3s").await;

    // Not logged in: the login form, and the data refuses.
    let page = client().get(gw.url("/console")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("name=\"key\""));
    for key in [None, Some(ACME_KEY), Some(OTHER_KEY), Some("nonsense")] {
        for path in ["/v1/admin/overview", "/v1/admin/stream", "/v1/admin/audit"] {
            let mut req = client().get(gw.url(path));
            if let Some(k) = key {
                req = req.bearer_auth(k);
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 401, "{path} with {key:?}");
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["code"], "unauthorized", "{v}");
        }
    }
    // Neither a tenant's key nor a wrong one logs in.
    for key in [ACME_KEY, "nonsense", ""] {
        let r = login(&gw, key, "x").await;
        assert_eq!(r.status(), 401, "{key}");
        assert!(r.headers().get("set-cookie").is_none());
        assert!(r.text().await.unwrap().contains("not an operator key"));
    }
    // Another site's form cannot log in (login CSRF).
    let r = client()
        .post(gw.url("/console/login"))
        .header("origin", "https://evil.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("key={ADMIN_KEY}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    let s = log_in(&gw, "Ala").await;
    let o = s.overview(&gw).await;
    for k in [
        "channels",
        "lanes",
        "connectors",
        "tenants",
        "held",
        "dead_letters",
        "campaigns",
        "pauses",
        "audit",
        "series",
    ] {
        assert!(!o[k].is_null(), "{k} in {o}");
    }
    let (code, ev) = first_event(&gw, &[("cookie", &s.cookie)]).await;
    assert_eq!(code, 200, "{ev}");
    assert!(ev.starts_with("event: overview\ndata: {"), "{ev}");
    // An operator key works on the stream too (scripts, no cookie).
    let (code, _) = first_event(&gw, &[("authorization", &format!("Bearer {ADMIN_KEY}"))]).await;
    assert_eq!(code, 200);

    // With the cookie, a change needs the session's token and this site's origin.
    let path = "/v1/admin/pauses/connector/ok";
    let no_token = client()
        .put(gw.url(path))
        .header("cookie", &s.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(no_token.status(), 403);
    let v: Value = no_token.json().await.unwrap();
    assert_eq!(v["code"], "forbidden", "{v}");
    let wrong_token = client()
        .put(gw.url(path))
        .header("cookie", &s.cookie)
        .header("x-csrf-token", "guess")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_token.status(), 403);
    let cross_site = client()
        .put(gw.url(path))
        .header("cookie", &s.cookie)
        .header("x-csrf-token", &s.csrf)
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(cross_site.status(), 403);
    assert!(
        s.overview(&gw).await["pauses"]
            .as_array()
            .unwrap()
            .is_empty(),
        "nothing refused changed anything"
    );
    // Bad targets: specific answers, nothing changes.
    for (method, p) in [
        (Method::PUT, "/v1/admin/pauses/connector/nope"),
        (Method::PUT, "/v1/admin/pauses/tenant/nope"),
        (Method::PUT, "/v1/admin/pauses/planet/ok"),
        (Method::POST, "/v1/admin/dead-letters/sms/0.1-1/requeue"),
        (Method::POST, "/v1/admin/dead-letters/fax/0.1-1/requeue"),
        (Method::POST, "/v1/admin/dead-letters/sms/junk/launch"),
    ] {
        let (c, v) = s.call(&gw, method, p).await;
        assert_eq!(
            (c, v["code"].as_str()),
            (404, Some("not-found")),
            "{p}: {v}"
        );
    }
    assert!(s.overview(&gw).await["pauses"]
        .as_array()
        .unwrap()
        .is_empty());

    // Logout needs the session's token too; then the cookie is dead.
    let s2 = log_in(&gw, "Bartek").await;
    let r = client()
        .post(gw.url("/console/logout"))
        .header("cookie", &s2.cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("csrf=guess")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(s2.call(&gw, Method::GET, "/v1/admin/overview").await.0, 200);
    let r = client()
        .post(gw.url("/console/logout"))
        .header("cookie", &s2.cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={}", s2.csrf))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert!(r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    assert_eq!(s2.call(&gw, Method::GET, "/v1/admin/overview").await.0, 401);

    // The first session expires (3 s): the data refuses it, the page asks to log in.
    tokio::time::sleep(Duration::from_millis(3300)).await;
    let (code, v) = s.call(&gw, Method::GET, "/v1/admin/overview").await;
    assert_eq!(code, 401, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("expired"), "{v}");
    let (code, _) = first_event(&gw, &[("cookie", &s.cookie)]).await;
    assert_eq!(code, 401);
    let (code, _) = s
        .call(&gw, Method::PUT, "/v1/admin/pauses/connector/ok")
        .await;
    assert_eq!(code, 401);
    let page = client()
        .get(gw.url("/console"))
        .header("cookie", &s.cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("expired") && page.contains("name=\"key\""),
        "{page}"
    );

    let log = audit(&gw).await;
    assert!(audited(&log, "Ala (key sha256:", "login", "console"));
    assert!(audited(&log, "Bartek (key sha256:", "login", "console"));
    assert!(audited(&log, "Bartek (key sha256:", "logout", "console"));
    assert!(!log.iter().any(|e| e["action"] == "pause"), "{log:?}");
    gw.stop().await;
}

async fn status(gw: &TestGateway, id: &str, key: &str) -> String {
    let r = gw
        .req(Method::GET, &format!("/v1/messages/{id}"), key)
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    v["status"].as_str().unwrap_or_default().to_string()
}

async fn send(gw: &TestGateway, key: &str, body: Value) -> String {
    let r = gw
        .req(Method::POST, "/v1/messages", key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"))
        .to_string()
}

async fn wait_for(gw: &TestGateway, id: &str, key: &str, want: &str) {
    for _ in 0..200 {
        if status(gw, id, key).await == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{id} never became {want}: {}", status(gw, id, key).await);
}

/// Still `queued` for a while: nothing was sent, nothing failed.
async fn stays_queued(gw: &TestGateway, id: &str, key: &str) {
    for _ in 0..15 {
        assert_eq!(status(gw, id, key).await, "queued", "{id}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn every_action_works_and_is_audited() {
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    let gw = start(&redis, "8h").await;
    let s = log_in(&gw, "Ala").await;
    let who = "Ala (key sha256:";

    // A paused connector keeps its binds and sends nothing; messages wait.
    let (code, v) = s
        .call(&gw, Method::PUT, "/v1/admin/pauses/connector/ok")
        .await;
    assert_eq!((code, v["changed"].as_bool()), (200, Some(true)), "{v}");
    let id = send(
        &gw,
        ACME_KEY,
        json!({"channel": "sms", "to": "+48601230101", "text": "a"}),
    )
    .await;
    stays_queued(&gw, &id, ACME_KEY).await;
    let o = s.overview(&gw).await;
    let ok = o["connectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "ok")
        .unwrap();
    assert_eq!(
        (ok["paused"].as_bool(), ok["up"].as_bool()),
        (Some(true), Some(true)),
        "{ok}"
    );
    assert_eq!(o["pauses"][0]["name"], "ok", "{o}");
    assert!(o["pauses"][0]["by"].as_str().unwrap().starts_with(who));
    let (code, v) = s
        .call(&gw, Method::DELETE, "/v1/admin/pauses/connector/ok")
        .await;
    assert_eq!((code, v["changed"].as_bool()), (200, Some(true)), "{v}");
    wait_for(&gw, &id, ACME_KEY, "delivered").await;

    // A paused tenant's messages wait; another tenant's go out.
    assert_eq!(
        s.call(&gw, Method::PUT, "/v1/admin/pauses/tenant/acme")
            .await
            .0,
        200
    );
    let waits = send(
        &gw,
        ACME_KEY,
        json!({"channel": "sms", "to": "+48602340202", "text": "b"}),
    )
    .await;
    let goes = send(
        &gw,
        OTHER_KEY,
        json!({"channel": "sms", "to": "+48603450303", "text": "c"}),
    )
    .await;
    wait_for(&gw, &goes, OTHER_KEY, "delivered").await;
    stays_queued(&gw, &waits, ACME_KEY).await;
    assert_eq!(
        s.call(&gw, Method::DELETE, "/v1/admin/pauses/tenant/acme")
            .await
            .0,
        200
    );
    wait_for(&gw, &waits, ACME_KEY, "delivered").await;

    // Held messages: shown with their text and reasons; released (then sent)
    // or dropped (rejected).
    let held: Vec<String> = held_ids(&gw, &["+48604560404", "+48605670505"]).await;
    let o = s.overview(&gw).await;
    let shown = o["held"]["entries"].as_array().unwrap();
    assert_eq!(o["held"]["count"], 2, "{o}");
    assert!(
        shown
            .iter()
            .all(|h| h["text"].as_str().unwrap().contains("bit.ly")
                && h["reasons"][0] == "url_shortener"),
        "{shown:?}"
    );
    let (code, v) = s
        .call(
            &gw,
            Method::POST,
            &format!("/v1/admin/held/{}/release", held[0]),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    let (code, v) = s
        .call(
            &gw,
            Method::POST,
            &format!("/v1/admin/held/{}/drop", held[1]),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    wait_for(&gw, &held[0], ACME_KEY, "delivered").await;
    assert_eq!(status(&gw, &held[1], ACME_KEY).await, "rejected");
    // The last minute's latencies: accepted → submitted at submit, submitted →
    // receipt from the receipts that came back to this instance.
    let o = s.overview(&gw).await;
    let sms = &o["channels"][0];
    assert_eq!(sms["channel"], "sms", "{o}");
    for k in ["accepted_to_submitted", "submitted_to_receipt"] {
        let (p50, p99) = (sms[k]["p50_ms"].as_f64(), sms[k]["p99_ms"].as_f64());
        assert!(
            p50.is_some_and(|p| p >= 0.0) && p99 >= p50,
            "{k}: {}",
            sms[k]
        );
    }

    // A callback that cannot be posted is dead-lettered; once the receiver is
    // back, requeued, it arrives. Another is discarded.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/cb");
    let mut first_id = String::new();
    for (i, to) in ["+48606780606", "+48607890707"].into_iter().enumerate() {
        let id = send(&gw, ACME_KEY, json!({"channel": "sms", "to": to, "text": "d", "callback_url": url, "callback_events": ["delivered"]})).await;
        if i == 0 {
            first_id = id;
        }
    }
    let dead = wait_dead(&s, &gw, "webhook", 2).await;
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    {
        let seen = seen.clone();
        let l = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let app = axum::Router::new().route(
            "/cb",
            axum::routing::post(move |body: String| {
                let seen = seen.clone();
                async move {
                    seen.lock().unwrap().push(body);
                    axum::http::StatusCode::OK
                }
            }),
        );
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    }
    let requeue = dead
        .iter()
        .find(|d| d["message_id"] == first_id.as_str())
        .unwrap();
    let discard = dead
        .iter()
        .find(|d| d["message_id"] != first_id.as_str())
        .unwrap();
    let rid = requeue["id"].as_str().unwrap();
    let did = discard["id"].as_str().unwrap();
    let (code, v) = s
        .call(
            &gw,
            Method::POST,
            &format!("/v1/admin/dead-letters/webhook/{rid}/requeue"),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    let (code, v) = s
        .call(
            &gw,
            Method::POST,
            &format!("/v1/admin/dead-letters/webhook/{did}/discard"),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    // Each once: the second time there is nothing.
    for (id, action) in [(rid, "requeue"), (did, "discard")] {
        let (code, v) = s
            .call(
                &gw,
                Method::POST,
                &format!("/v1/admin/dead-letters/webhook/{id}/{action}"),
            )
            .await;
        assert_eq!((code, v["code"].as_str()), (404, Some("not-found")), "{v}");
    }
    for _ in 0..100 {
        if !seen.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = seen.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].contains(&first_id) && got[0].contains("delivered"),
        "{got:?}"
    );

    // A message that failed after its last attempt is final: its dead letter is
    // not sent again (the sender was told), but can be discarded.
    let failed = send(
        &gw,
        ACME_KEY,
        json!({"channel": "sms", "to": "+48509000001", "text": "e"}),
    )
    .await;
    wait_for(&gw, &failed, ACME_KEY, "failed").await;
    let dead = wait_dead(&s, &gw, "sms", 1).await;
    let sid = dead[0]["id"].as_str().unwrap();
    let (code, v) = s
        .call(
            &gw,
            Method::POST,
            &format!("/v1/admin/dead-letters/sms/{sid}/requeue"),
        )
        .await;
    assert_eq!(
        (code, v["code"].as_str()),
        (409, Some("invalid-state")),
        "{v}"
    );
    assert!(v["detail"].as_str().unwrap().contains("failed"), "{v}");
    assert_eq!(
        wait_dead(&s, &gw, "sms", 1).await.len(),
        1,
        "nothing changed"
    );
    assert_eq!(
        s.call(
            &gw,
            Method::POST,
            &format!("/v1/admin/dead-letters/sms/{sid}/discard")
        )
        .await
        .0,
        200
    );

    let log = audit(&gw).await;
    for (action, target) in [
        ("pause", "connector:ok".to_string()),
        ("resume", "connector:ok".to_string()),
        ("pause", "tenant:acme".to_string()),
        ("resume", "tenant:acme".to_string()),
        ("release", held[0].clone()),
        ("drop", held[1].clone()),
        ("requeue", format!("webhook/{rid}")),
        ("discard", format!("webhook/{did}")),
        ("discard", format!("sms/{sid}")),
    ] {
        assert!(
            audited(&log, who, action, &target),
            "{action} {target} in {log:#?}"
        );
    }
    // The refused requeue changed nothing and is not in the log.
    assert!(!audited(&log, who, "requeue", &format!("sms/{sid}")));
    // Newest first.
    assert_eq!(log[0]["action"], "discard", "{log:#?}");
    gw.stop().await;
}

/// Held messages for each number (a public shortener in the text).
async fn held_ids(gw: &TestGateway, numbers: &[&str]) -> Vec<String> {
    let mut ids = Vec::new();
    for to in numbers {
        let r = gw
            .req(Method::POST, "/v1/messages", ACME_KEY)
            .json(&json!({"channel": "sms", "to": to, "text": "Zapłać: bit.ly/3abc"}))
            .send()
            .await
            .unwrap();
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["status"], "held", "{v}");
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    ids
}

/// The dead letters of a lane once there are `n` of them (the overview reads
/// the lane's gauge, refreshed every 2 s).
async fn wait_dead(s: &Session, gw: &TestGateway, lane: &str, n: usize) -> Vec<Value> {
    for _ in 0..200 {
        let o = s.overview(gw).await;
        let list = o["dead_letters"][lane]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if list.len() >= n {
            return list;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{lane} never had {n} dead letters");
}
