//! Stored templates and tracked links through the HTTP API, on the memory
//! backend and on a real Redis: versions, declared variables with defaults and
//! formats, preview with SMS cost, messages from a template, and the `/l/{code}`
//! redirect with its click, signed `clicked` callback and prefetch detection.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use goniec_testkit::gateway::{config_toml, parse, TestGateway, OTHER_KEY, SECRET};
use goniec_testkit::RedisServer;
use reqwest::Method;
use serde_json::{json, Value};

/// The `other` tenant gets a link domain and may call back to loopback.
const EXTRA: &str = r#"
allow_private_callbacks = true

[tenants.links]
domain = "https://acme.link/"

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

const BROWSER: &str =
    "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 Chrome/126.0 Mobile Safari/537.36";

async fn call(gw: &TestGateway, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = gw.req(method, path, OTHER_KEY);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let code = r.status().as_u16();
    let text = r.text().await.unwrap();
    (code, serde_json::from_str(&text).unwrap_or(Value::Null))
}

type Seen = Arc<Mutex<Vec<(String, String)>>>;

async fn receiver() -> (String, Seen) {
    use axum::{http::HeaderMap, routing::post, Router};
    let seen: Seen = Default::default();
    let s = seen.clone();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let app = Router::new().route(
        "/cb",
        post(move |headers: HeaderMap, body: String| {
            let s = s.clone();
            async move {
                let sig = headers
                    .get("goniec-signature")
                    .map(|v| v.to_str().unwrap().to_string())
                    .unwrap_or_default();
                s.lock().unwrap().push((sig, body));
                axum::http::StatusCode::OK
            }
        }),
    );
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (format!("http://{addr}/cb"), seen)
}

fn sms_template(text: &str) -> Value {
    json!({
        "id": "przypomnienie",
        "channel": "sms",
        "name": "D-3",
        "text": text,
        "vars": {
            "name": {"default": "Kliencie"},
            "amount": {"format": "amount"},
            "due": {"format": "date"},
            "invoice": {}
        }
    })
}

const V1: &str = "Dzień dobry {{name}}, zaległość {{amount}} zł do {{due}}. Faktura {{invoice}}.";
const V2: &str = "Dzien dobry {{name}}, zaleglosc {{amount}} zl do {{due}}. Zaplac: {{link:https://pay.example.com/inv/{{invoice}}}}";

async fn templates_and_links(gw: &TestGateway) {
    // A placeholder not declared: refused, naming it.
    let mut bad = sms_template("Hi {{nick}}");
    bad["vars"] = json!({"nick": {}, "x": {}});
    let (code, body) = call(gw, Method::POST, "/v1/templates", Some(bad)).await;
    assert_eq!(
        (code, body["code"].as_str()),
        (422, Some("invalid-template")),
        "{body}"
    );
    assert_eq!(body["field"], "vars.x");
    let mut bad = sms_template(V1);
    bad["vars"]["amount"]["format"] = json!("money");
    let (code, body) = call(gw, Method::POST, "/v1/templates", Some(bad)).await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(body["field"], "vars.amount.format", "{body}");

    let (code, body) = call(gw, Method::POST, "/v1/templates", Some(sms_template(V1))).await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["version"], 1);
    let (code, body) = call(gw, Method::POST, "/v1/templates", Some(sms_template(V1))).await;
    assert_eq!(
        (code, body["code"].as_str()),
        (409, Some("invalid-state")),
        "{body}"
    );
    let (code, body) = call(
        gw,
        Method::PUT,
        "/v1/templates/przypomnienie",
        Some(sms_template(V2)),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["version"], 2);
    let (code, body) = call(
        gw,
        Method::GET,
        "/v1/templates/przypomnienie?version=1",
        None,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        (body["version"].as_u64(), body["latest"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(body["text"], V1);
    let (_, body) = call(gw, Method::GET, "/v1/templates", None).await;
    assert_eq!(body["templates"][0]["id"], "przypomnienie");
    assert_eq!(body["templates"][0]["version"], 2);

    // Preview: formats applied, the link shown as it will look, the cost.
    let (code, body) = call(
        gw,
        Method::POST,
        "/v1/templates/przypomnienie/preview",
        Some(json!({"version": 1, "vars": {"amount": 120.5, "due": "2026-12-31", "invoice": "FV/7"}})),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        body["rendered"]["text"],
        "Dzień dobry Kliencie, zaległość 120,50 zł do 31.12.2026. Faktura FV/7."
    );
    assert_eq!(body["sms"]["as_written"]["encoding"], "ucs2");
    assert_eq!(body["sms"]["transliterated"]["encoding"], "gsm7");
    let (_, body) = call(
        gw,
        Method::POST,
        "/v1/templates/przypomnienie/preview",
        Some(json!({"vars": {"amount": "7", "due": "2026-01-02", "invoice": "A1"}})),
    )
    .await;
    assert!(
        body["rendered"]["text"]
            .as_str()
            .unwrap()
            .ends_with("Zaplac: https://acme.link/xxxxxxxxxx"),
        "{body}"
    );
    let (code, body) = call(
        gw,
        Method::POST,
        "/v1/templates/przypomnienie/preview",
        Some(json!({"vars": {"amount": "7"}})),
    )
    .await;
    assert_eq!(
        (code, body["code"].as_str()),
        (422, Some("missing-variable")),
        "{body}"
    );
    assert_eq!(body["field"], "vars.due");

    // A message from the template: the newest version, recorded, with a
    // short link of its own.
    let (cb, seen) = receiver().await;
    let msg = json!({"channel": "sms", "to": "+48600100200", "template_id": "przypomnienie",
        "vars": {"amount": 99, "due": "2026-12-24", "invoice": "FV/9"}, "callback_url": cb,
        "callback_events": ["delivered"]});
    let (code, body) = call(gw, Method::POST, "/v1/messages", Some(msg.clone())).await;
    assert_eq!(code, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    let (_, shown) = call(gw, Method::GET, &format!("/v1/messages/{id}"), None).await;
    assert_eq!(
        shown["template"],
        json!({"id": "przypomnienie", "version": 2})
    );
    let text = shown["text"].as_str().unwrap();
    let short = text.rsplit("Zaplac: ").next().unwrap();
    let code_part = short.strip_prefix("https://acme.link/").expect(text);
    assert_eq!(code_part.len(), 10);
    assert!(code_part.bytes().all(|b| b.is_ascii_alphanumeric()));
    // Two messages never share a code.
    let (_, again) = call(gw, Method::POST, "/v1/messages", Some(msg.clone())).await;
    let (_, again) = call(
        gw,
        Method::GET,
        &format!("/v1/messages/{}", again["id"].as_str().unwrap()),
        None,
    )
    .await;
    assert_ne!(again["text"], shown["text"]);

    // Refusals name the field.
    let mut m = msg.clone();
    m["vars"] = json!({"amount": 1});
    let (code, body) = call(gw, Method::POST, "/v1/messages", Some(m)).await;
    assert_eq!(
        (code, body["code"].as_str(), body["field"].as_str()),
        (422, Some("missing-variable"), Some("vars.due")),
        "{body}"
    );
    let mut m = msg.clone();
    m["template_id"] = json!("nope");
    let (code, body) = call(gw, Method::POST, "/v1/messages", Some(m)).await;
    assert_eq!(
        (code, body["code"].as_str()),
        (422, Some("unknown-template")),
        "{body}"
    );
    let mut m = msg.clone();
    m["text"] = json!("also text");
    let (code, body) = call(gw, Method::POST, "/v1/messages", Some(m)).await;
    assert_eq!(
        (code, body["code"].as_str()),
        (422, Some("conflicting-fields")),
        "{body}"
    );
    let mut m = msg.clone();
    m["template_version"] = json!(9);
    let (code, body) = call(gw, Method::POST, "/v1/messages", Some(m)).await;
    assert_eq!(
        (code, body["code"].as_str()),
        (422, Some("unknown-template")),
        "{body}"
    );

    // The redirect: a person's click.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let follow = |method: Method, code: &str, ua: &str| {
        client
            .request(method, gw.url(&format!("/l/{code}")))
            .header("user-agent", ua)
            .send()
    };
    let r = follow(Method::GET, code_part, BROWSER).await.unwrap();
    assert_eq!(r.status().as_u16(), 302);
    assert_eq!(r.headers()["location"], "https://pay.example.com/inv/FV/9");
    // Previews and scanners: prefetch.
    let r = follow(Method::HEAD, code_part, BROWSER).await.unwrap();
    assert_eq!(r.status().as_u16(), 302);
    let r = follow(Method::GET, code_part, "WhatsApp/2.23.20.0 A")
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 302);
    // Unknown, malformed: the same plain 404.
    for code in ["ZZZZZZZZZZ", "short", "ab.cd-efgh"] {
        let r = follow(Method::GET, code, BROWSER).await.unwrap();
        assert_eq!(r.status().as_u16(), 404, "{code}");
        let body = r.text().await.unwrap();
        assert!(body.contains("does not exist"), "{body}");
    }

    // The click is on the message, and one signed callback says so.
    let (_, shown) = call(gw, Method::GET, &format!("/v1/messages/{id}"), None).await;
    assert_eq!(shown["clicks"]["clicks"], 1, "{shown}");
    assert_eq!(shown["clicks"]["prefetches"], 2, "{shown}");
    let reasons: Vec<&str> = shown["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["reason"].as_str())
        .collect();
    assert!(
        reasons.contains(&"clicked") && reasons.contains(&"prefetch"),
        "{shown}"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let clicked = loop {
        let found = seen
            .lock()
            .unwrap()
            .iter()
            .find(|(_, b)| b.contains("\"clicked\"") && b.contains(&id))
            .cloned();
        if let Some(f) = found {
            break f;
        }
        assert!(std::time::Instant::now() < deadline, "no clicked callback");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(goniec_testkit::gateway::verify_signature(
        SECRET, &clicked.0, &clicked.1
    ));
    let v: Value = serde_json::from_str(&clicked.1).unwrap();
    assert_eq!(v["event"], "clicked");
    assert_eq!(v["url"], "https://pay.example.com/inv/FV/9");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let clicks = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, b)| b.contains("\"clicked\""))
        .count();
    assert_eq!(clicks, 1, "prefetches post no callback");

    // Delete: gone, every version.
    let (code, _) = call(gw, Method::DELETE, "/v1/templates/przypomnienie", None).await;
    assert_eq!(code, 204);
    let (code, _) = call(
        gw,
        Method::GET,
        "/v1/templates/przypomnienie?version=1",
        None,
    )
    .await;
    assert_eq!(code, 404);
    let m = gw.metrics().await;
    assert!(
        m.contains("goniec_link_clicks_total{kind=\"clicked\"} 1"),
        "{m}"
    );
}

#[tokio::test]
async fn templates_and_links_on_memory() {
    let gw = TestGateway::start(parse(&config_toml(None, EXTRA))).await;
    templates_and_links(&gw).await;
    gw.stop().await;
}

#[tokio::test]
async fn templates_and_links_on_redis() {
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    let gw = TestGateway::start(parse(&config_toml(Some(&redis.url()), EXTRA))).await;
    templates_and_links(&gw).await;
    gw.stop().await;
}

/// A fetch from a data-centre range within a second of delivery is a scanner;
/// the same address later is a person. `[links] listen` serves `/{code}`.
#[tokio::test]
async fn scanners_from_data_centres_and_the_links_listener() {
    let port = goniec_testkit::free_port();
    let toml = config_toml(None, EXTRA).replace(
        "[admin]",
        &format!("[links]\nlisten = \"127.0.0.1:{port}\"\ndatacenter_ranges = [\"127.0.0.0/8\"]\n\n[admin]"),
    );
    let gw = TestGateway::start(parse(&toml)).await;
    let (code, body) = call(&gw, Method::POST, "/v1/templates", Some(sms_template(V2))).await;
    assert_eq!(code, 201, "{body}");
    let msg = json!({"channel": "sms", "to": "+48600100300", "template_id": "przypomnienie",
        "vars": {"amount": 1, "due": "2026-12-24", "invoice": "FV/1"}});
    let (_, body) = call(&gw, Method::POST, "/v1/messages", Some(msg)).await;
    let id = body["id"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let shown = loop {
        let (_, shown) = call(&gw, Method::GET, &format!("/v1/messages/{id}"), None).await;
        if shown["status"] == "delivered" {
            break shown;
        }
        assert!(std::time::Instant::now() < deadline, "{shown}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let code = shown["text"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap();
    // Within a second of delivery, from 127.0.0.0/8: a scanner.
    let r = client
        .get(gw.url(&format!("/l/{code}")))
        .header("user-agent", BROWSER)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 302);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Later, on the links listener at /{code}: a person.
    let r = client
        .get(format!("http://127.0.0.1:{port}/{code}"))
        .header("user-agent", BROWSER)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 302);
    assert_eq!(r.headers()["location"], "https://pay.example.com/inv/FV/1");
    let r = client
        .get(format!("http://127.0.0.1:{port}/v1/messages/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404, "only redirects there");
    let (_, shown) = call(&gw, Method::GET, &format!("/v1/messages/{id}"), None).await;
    assert_eq!(shown["clicks"]["prefetches"], 1, "{shown}");
    assert_eq!(shown["clicks"]["clicks"], 1, "{shown}");
    gw.stop().await;
}
