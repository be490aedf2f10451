//! The pipeline end to end on a real Redis: HTTP API → store → workers → (stub)
//! connector → receipts → signed callbacks. Each test spawns its own redis-server.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use goniec_testkit::gateway::{
    config_toml, metric_sum, parse, TestGateway, ACME_KEY, ADMIN_KEY, OTHER_KEY, SECRET,
};
use goniec_testkit::RedisServer;
use reqwest::Method;
use serde_json::{json, Value};

/// Stub connectors: `ok` delivers SMS after a short receipt delay, `flaky` fails
/// every e-mail transiently, `broken` refuses every RCS message.
const CONNECTORS: &str = r#"
[[connectors]]
name = "ok"
kind = "stub"
channels = ["sms"]
receipt_delay = "20ms"

[[connectors]]
name = "flaky"
kind = "stub"
channels = ["email"]
transient_every = 1

[[connectors]]
name = "broken"
kind = "stub"
channels = ["rcs"]
permanent_every = 1

[[routes]]
channel = "sms"
connector = "ok"

[[routes]]
channel = "email"
connector = "flaky"

[[routes]]
channel = "rcs"
connector = "broken"
"#;

async fn start(redis: &RedisServer) -> TestGateway {
    let gw = TestGateway::start(parse(&config_toml(Some(&redis.url()), CONNECTORS))).await;
    gw.wait_ready(200, Duration::from_secs(10)).await;
    gw
}

fn sms(to: &str) -> Value {
    json!({"channel": "sms", "to": to, "text": "Dzień dobry, przypominamy o płatności."})
}

async fn dbsize(redis: &RedisServer) -> i64 {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("DBSIZE").query_async(&mut c).await.unwrap()
}

#[tokio::test]
async fn sms_goes_from_accepted_to_delivered_with_events() {
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    let gw = start(&redis).await;
    let (code, body) = gw
        .post(
            "/v1/messages",
            &json!({"channel":"sms","to":"501 234 567","text":"Zażółć","client_ref":"inv-1"}),
        )
        .await;
    assert_eq!(code, 202, "{body}");
    assert_eq!(body["status"], "queued");
    assert_eq!(body["segments"], 1);
    assert_eq!(body["encoding"], "ucs2");
    let id = body["id"].as_str().unwrap().to_string();
    let done = gw
        .wait_status(&id, Duration::from_secs(10), |s| s == "delivered")
        .await;
    assert_eq!(done["to"], "+48501234567");
    let statuses: Vec<&str> = done["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["accepted", "queued", "submitted", "delivered"]);
    assert!(done["events"][2]["detail"]
        .as_str()
        .unwrap()
        .contains("connector=ok"));
    let m = gw.metrics().await;
    assert_eq!(
        metric_sum(
            &m,
            "goniec_messages_accepted_total",
            &[("tenant", "acme"), ("channel", "sms")]
        ),
        1.0
    );
    assert_eq!(
        metric_sum(
            &m,
            "goniec_receipts_total",
            &[("connector", "ok"), ("state", "delivered")]
        ),
        1.0
    );
    assert_eq!(
        metric_sum(
            &m,
            "goniec_connector_submits_total",
            &[("connector", "ok"), ("outcome", "ok")]
        ),
        1.0
    );
    gw.stop().await;
}

#[tokio::test]
async fn transient_failures_retry_then_dead_letter_and_permanent_ones_fail_at_once() {
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    let gw = start(&redis).await;
    let (code, body) = gw
        .post("/v1/messages", &json!({"channel":"email","to":"jan@example.com","email":{"subject":"Wyciąg","html":"<p>x</p>"}}))
        .await;
    assert_eq!(code, 202, "{body}");
    let email = body["id"].as_str().unwrap().to_string();
    let (code, body) = gw
        .post(
            "/v1/messages",
            &json!({"channel":"rcs","to":"+48501234567","text":"hej"}),
        )
        .await;
    assert_eq!(code, 202, "{body}");
    let rcs = body["id"].as_str().unwrap().to_string();

    let r = gw
        .wait_status(&rcs, Duration::from_secs(10), |s| s == "failed")
        .await;
    assert_eq!(
        r["events"].as_array().unwrap().last().unwrap()["reason"],
        "stub_rejected"
    );

    // max_attempts = 4 with 100..500 ms backoff.
    let e = gw
        .wait_status(&email, Duration::from_secs(20), |s| s == "failed")
        .await;
    assert_eq!(
        e["events"].as_array().unwrap().last().unwrap()["reason"],
        "max_attempts"
    );
    let m = gw.metrics().await;
    assert_eq!(
        metric_sum(
            &m,
            "goniec_connector_submits_total",
            &[("connector", "flaky"), ("outcome", "transient")]
        ),
        4.0
    );
    assert_eq!(
        metric_sum(&m, "goniec_dead_letters_total", &[("lane", "email")]),
        1.0
    );
    gw.stop().await;
}

#[tokio::test]
async fn every_bad_input_gets_its_own_4xx_and_changes_nothing() {
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    let gw = start(&redis).await;
    // One accepted message by `other`, to probe cross-tenant access, and one idempotent one.
    let r = gw
        .req(Method::POST, "/v1/messages", OTHER_KEY)
        .json(&sms("+48501234567"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let others_id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = gw
        .req(Method::POST, "/v1/messages", ACME_KEY)
        .header("Idempotency-Key", "order-1")
        .json(&sms("+48501234567"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    tokio::time::sleep(Duration::from_millis(500)).await; // let both deliver and settle
    let before = dbsize(&redis).await;

    let big_batch = json!({"messages": vec![sms("+48501234567"); 10_001]});
    let cases: Vec<(&str, reqwest::RequestBuilder, u16, &str, Option<&str>)> = vec![
        (
            "malformed JSON",
            gw.req(Method::POST, "/v1/messages", ACME_KEY)
                .header("content-type", "application/json")
                .body("{\"channel\": \"sms\","),
            400,
            "malformed-json",
            None,
        ),
        (
            "wrong type",
            gw.req(Method::POST, "/v1/messages", ACME_KEY)
                .json(&json!({"channel":"sms","to":48501234567_u64,"text":"x"})),
            422,
            "invalid-type",
            Some("to"),
        ),
        (
            "unknown field",
            gw.req(Method::POST, "/v1/messages", ACME_KEY)
                .json(&json!({"channel":"sms","to":"+48501234567","text":"x","priority":1})),
            422,
            "unknown-field",
            Some("priority"),
        ),
        (
            "missing to",
            gw.req(Method::POST, "/v1/messages", ACME_KEY)
                .json(&json!({"channel":"sms","text":"x"})),
            422,
            "missing-field",
            Some("to"),
        ),
        (
            "unknown channel",
            gw.req(Method::POST, "/v1/messages", ACME_KEY)
                .json(&json!({"channel":"fax","to":"+48501234567","text":"x"})),
            422,
            "invalid-value",
            Some("channel"),
        ),
        (
            "invalid number",
            gw.req(Method::POST, "/v1/messages", ACME_KEY)
                .json(&sms("+48 123")),
            422,
            "invalid-number",
            Some("to"),
        ),
        (
            "landline",
            gw.req(Method::POST, "/v1/messages", ACME_KEY)
                .json(&sms("+48 22 654 32 10")),
            422,
            "not-mobile",
            Some("to"),
        ),
        (
            "empty text",
            gw.req(Method::POST, "/v1/messages", ACME_KEY)
                .json(&json!({"channel":"sms","to":"+48501234567","text":""})),
            422,
            "empty-text",
            Some("text"),
        ),
        (
            "over-long text",
            gw.req(Method::POST, "/v1/messages", ACME_KEY)
                .json(&json!({"channel":"sms","to":"+48501234567","text":"ż".repeat(1000)})),
            422,
            "too-many-segments",
            Some("text"),
        ),
        (
            "10,001-item batch",
            gw.req(Method::POST, "/v1/messages/batch", ACME_KEY)
                .json(&big_batch),
            422,
            "batch-too-large",
            Some("messages"),
        ),
        (
            "body over the limit",
            gw.req(Method::POST, "/v1/messages", ACME_KEY)
                .json(&json!({"channel":"sms","to":"+48501234567","text":"a".repeat(3 << 20)})),
            413,
            "body-too-large",
            None,
        ),
        (
            "missing API key",
            gw.http
                .post(gw.url("/v1/messages"))
                .json(&sms("+48501234567")),
            401,
            "unauthorized",
            None,
        ),
        (
            "wrong API key",
            gw.req(Method::POST, "/v1/messages", "nope")
                .json(&sms("+48501234567")),
            401,
            "unauthorized",
            None,
        ),
        (
            "another tenant's id",
            gw.req(Method::GET, &format!("/v1/messages/{others_id}"), ACME_KEY),
            404,
            "not-found",
            None,
        ),
        (
            "cancel another tenant's id",
            gw.req(
                Method::DELETE,
                &format!("/v1/messages/{others_id}"),
                ACME_KEY,
            ),
            404,
            "not-found",
            None,
        ),
        (
            "reused Idempotency-Key",
            gw.req(Method::POST, "/v1/messages", ACME_KEY)
                .header("Idempotency-Key", "order-1")
                .json(&sms("+48501234568")),
            409,
            "idempotency-key-reused",
            None,
        ),
        (
            "not JSON",
            gw.req(Method::POST, "/v1/messages", ACME_KEY)
                .header("content-type", "text/plain")
                .body("hi"),
            415,
            "unsupported-media-type",
            None,
        ),
        (
            "bad history query",
            gw.req(Method::GET, "/v1/messages?to=1&client_ref=2", ACME_KEY),
            422,
            "invalid-query",
            None,
        ),
        (
            "history limit that is not a number",
            gw.req(Method::GET, "/v1/messages?to=1&limit=ten", ACME_KEY),
            422,
            "invalid-query",
            Some("limit"),
        ),
        (
            "unknown history parameter",
            gw.req(Method::GET, "/v1/messages?to=1&colour=red", ACME_KEY),
            422,
            "invalid-query",
            Some("colour"),
        ),
        (
            "a method the endpoint does not take",
            gw.req(Method::PUT, "/v1/messages", ACME_KEY).body("{}"),
            405,
            "method-not-allowed",
            None,
        ),
    ];
    for (name, req, status, code, field) in cases {
        let r = req.send().await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{name}");
        let ct = r.headers()["content-type"].to_str().unwrap().to_string();
        assert_eq!(ct, "application/problem+json", "{name}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["code"], code, "{name}: {body}");
        assert_eq!(
            body["type"],
            format!("https://goniec.dev/problems/{code}"),
            "{name}"
        );
        assert_eq!(body["status"], status, "{name}");
        assert!(!body["detail"].as_str().unwrap().is_empty(), "{name}");
        if let Some(f) = field {
            assert_eq!(body["field"], f, "{name}: {body}");
        }
        assert_eq!(dbsize(&redis).await, before, "{name} changed the store");
    }
    // The other tenant's message is untouched.
    let r = gw
        .req(Method::GET, &format!("/v1/messages/{others_id}"), OTHER_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "delivered");
    gw.stop().await;
}

#[tokio::test]
async fn batch_history_idempotency_cancel_and_health() {
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    let gw = start(&redis).await;

    // A batch: one bad item does not sink the others; results in request order.
    let tomorrow = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24)).to_string();
    let batch = json!({"messages": [
        {"channel":"sms","to":"+48501000001","text":"a","client_ref":"case-7"},
        {"channel":"sms","to":"+48 22 654 32 10","text":"landline"},
        {"channel":"sms","to":"+48501000001","text":"b","client_ref":"case-7"},
        {"channel":"sms","to":"+48501000001","text":"c","send_at":tomorrow},
    ]});
    let (code, body) = gw.post("/v1/messages/batch", &batch).await;
    assert_eq!(code, 207, "{body}");
    assert_eq!(
        (body["accepted"].as_u64(), body["rejected"].as_u64()),
        (Some(3), Some(1))
    );
    let results = body["results"].as_array().unwrap();
    assert!(results[0]["id"].is_string());
    assert_eq!(results[1]["error"]["code"], "not-mobile");
    assert!(results[2]["id"].is_string());
    assert_eq!(results[3]["status"], "scheduled");
    let ids: Vec<String> = [0, 2, 3]
        .iter()
        .map(|&i| results[i]["id"].as_str().unwrap().to_string())
        .collect();

    // Contact history: newest first, paginated by cursor; by client_ref.
    let (code, page1) = gw.get("/v1/messages?to=501000001&limit=2").await;
    assert_eq!(code, 200, "{page1}");
    let got: Vec<&str> = page1["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, [ids[2].as_str(), ids[1].as_str()]);
    let cursor = page1["next_cursor"].as_str().unwrap();
    let (_, page2) = gw
        .get(&format!(
            "/v1/messages?to=%2B48501000001&limit=2&cursor={cursor}"
        ))
        .await;
    let got: Vec<&str> = page2["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, [ids[0].as_str()]);
    assert!(page2["next_cursor"].is_null());
    let (_, by_ref) = gw.get("/v1/messages?client_ref=case-7").await;
    assert_eq!(by_ref["messages"].as_array().unwrap().len(), 2);
    // Another tenant sees none of it.
    let r = gw
        .req(Method::GET, "/v1/messages?to=%2B48501000001", OTHER_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap()["messages"]
            .as_array()
            .unwrap()
            .len(),
        0
    );

    // Cancel the scheduled one; a delivered one cannot be cancelled.
    let r = gw
        .req(
            Method::DELETE,
            &format!("/v1/messages/{}", ids[2]),
            ACME_KEY,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, m) = gw.get(&format!("/v1/messages/{}", ids[2])).await;
    assert_eq!(m["status"], "cancelled");
    gw.wait_status(&ids[0], Duration::from_secs(10), |s| s == "delivered")
        .await;
    let r = gw
        .req(
            Method::DELETE,
            &format!("/v1/messages/{}", ids[0]),
            ACME_KEY,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "not-cancellable");

    // Idempotency: the same key and body replay the first answer (same id).
    let send = || {
        gw.req(Method::POST, "/v1/messages", ACME_KEY)
            .header("Idempotency-Key", "k-42")
            .json(&sms("+48501000002"))
            .send()
    };
    let first = send().await.unwrap();
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.unwrap();
    let again = send().await.unwrap();
    assert_eq!(again.status(), 202);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap()["id"], first["id"]);
    let (_, hist) = gw.get("/v1/messages?to=%2B48501000002").await;
    assert_eq!(
        hist["messages"].as_array().unwrap().len(),
        1,
        "replay stored nothing new"
    );

    // A refused request frees its Idempotency-Key: the corrected retry is accepted.
    let bad = gw
        .req(Method::POST, "/v1/messages", ACME_KEY)
        .header("Idempotency-Key", "k-43")
        .json(&sms("+48 22 654 32 10"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);
    let good = gw
        .req(Method::POST, "/v1/messages", ACME_KEY)
        .header("Idempotency-Key", "k-43")
        .json(&sms("+48501000003"))
        .send()
        .await
        .unwrap();
    assert_eq!(good.status(), 202);

    // Health endpoints and metrics.
    assert_eq!(
        gw.http
            .get(gw.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        gw.http
            .get(gw.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let m = gw.metrics().await;
    assert!(
        metric_sum(
            &m,
            "goniec_messages_refused_total",
            &[("reason", "not-mobile")]
        ) >= 1.0
    );
    assert!(m.contains("goniec_queue_depth"));
    assert!(m.contains("goniec_http_request_duration_seconds_bucket"));
    gw.stop().await;
}

/// A callback receiver that fails the first `fail_first` requests with 500.
#[derive(Clone, Default)]
struct Receiver {
    seen: Arc<Mutex<Vec<(String, String)>>>,
    /// Every body posted, failed attempts included.
    attempts: Arc<Mutex<Vec<String>>>,
    calls: Arc<AtomicUsize>,
    fail_first: usize,
}

impl Receiver {
    /// The callbacks received once there are `n` (or after 10 s, however many).
    async fn wait_seen(&self, n: usize) -> Vec<(String, String)> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while self.seen.lock().unwrap().len() < n && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.seen.lock().unwrap().clone()
    }
}

async fn spawn_receiver(r: Receiver) -> String {
    use axum::{http::HeaderMap, routing::post, Router};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let app = Router::new().route(
        "/cb",
        post(move |headers: HeaderMap, body: String| {
            let r = r.clone();
            async move {
                let n = r.calls.fetch_add(1, Ordering::SeqCst);
                r.attempts.lock().unwrap().push(body.clone());
                if n < r.fail_first {
                    return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
                }
                let sig = headers
                    .get("goniec-signature")
                    .map(|v| v.to_str().unwrap().to_string())
                    .unwrap_or_default();
                r.seen.lock().unwrap().push((sig, body));
                axum::http::StatusCode::OK
            }
        }),
    );
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    format!("http://{addr}/cb")
}

/// Verify a `Goniec-Signature` written from the documented formula.
fn verify(sig: &str, body: &str) -> bool {
    goniec_testkit::gateway::verify_signature(SECRET, sig, body)
}

/// `callback_events` picks which status changes are posted: a message asking
/// for final states only gets one callback; one without the field gets every
/// change; a bad list is refused and stores nothing.
#[tokio::test]
async fn callback_events_choose_the_changes_posted() {
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    let gw = start(&redis).await;
    let recv = Receiver::default();
    let url = spawn_receiver(recv.clone()).await;
    let mut only_final = sms("+48501234571");
    only_final["callback_url"] = json!(url);
    only_final["callback_events"] = json!(["delivered", "undeliverable", "expired", "failed"]);
    let mut every = sms("+48501234572");
    every["callback_url"] = json!(url);
    let mut ids = Vec::new();
    for req in [&only_final, &every] {
        let (code, body) = gw.post("/v1/messages", req).await;
        assert_eq!(code, 202, "{body}");
        ids.push(body["id"].as_str().unwrap().to_string());
    }
    for id in &ids {
        gw.wait_status(id, Duration::from_secs(10), |s| s == "delivered")
            .await;
    }
    recv.wait_seen(3).await;
    tokio::time::sleep(Duration::from_millis(300)).await; // nothing more may come
    let mut got: Vec<(String, String)> = recv
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|(_, body)| {
            let v: Value = serde_json::from_str(body).unwrap();
            (
                v["id"].as_str().unwrap().to_string(),
                v["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    got.sort();
    let mut want = vec![
        (ids[0].clone(), "delivered".to_string()),
        (ids[1].clone(), "delivered".to_string()),
        (ids[1].clone(), "submitted".to_string()),
    ];
    want.sort();
    assert_eq!(got, want);

    let before = dbsize(&redis).await;
    let mut bad = sms("+48501234573");
    bad["callback_url"] = json!(url);
    bad["callback_events"] = json!(["delivered", "sent"]);
    let (code, body) = gw.post("/v1/messages", &bad).await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(body["field"], "callback_events", "{body}");
    assert_eq!(
        dbsize(&redis).await,
        before,
        "a refused request stores nothing"
    );
    gw.stop().await;
}

/// A status callback job queued by an earlier version carries no copy of its
/// message's context: the webhook lane loads the message and posts the same
/// body as for a job that carries it.
#[tokio::test]
async fn a_callback_job_without_its_message_context_loads_the_message() {
    use goniec_gateway::store::{CallbackPayload, Job, Lane, Store, Task};
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    let cfg = parse(&config_toml(Some(&redis.url()), CONNECTORS));
    let store = goniec_gateway::store::redis::RedisStore::new(&cfg.store).unwrap();
    let gw = TestGateway::start(cfg).await;
    gw.wait_ready(200, Duration::from_secs(10)).await;
    let recv = Receiver::default();
    let url = spawn_receiver(recv.clone()).await;
    let mut req = sms("+48501234574");
    req["callback_url"] = json!(url);
    req["client_ref"] = json!("inv-10");
    let (code, body) = gw.post("/v1/messages", &req).await;
    assert_eq!(code, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    gw.wait_status(&id, Duration::from_secs(10), |s| s == "delivered")
        .await;
    let carried = recv.wait_seen(2).await;
    assert_eq!(carried.len(), 2, "submitted and delivered");
    // The delivered callback again, as an older version queued it.
    let delivered: Value = carried
        .iter()
        .map(|(_, b)| serde_json::from_str::<Value>(b).unwrap())
        .find(|v| v["status"] == "delivered")
        .unwrap();
    let at = unix_ms(delivered["at"].as_str().unwrap());
    let job = Job {
        id: goniec_gateway::model::new_message_id_in(goniec_gateway::model::partition_of(&id)),
        attempt: 0,
        task: Task::Callback(CallbackPayload {
            message_id: id.clone(),
            status: goniec_gateway::model::Status::Delivered,
            at,
            reason: None,
            context: None,
        }),
    };
    assert!(!job.task.encode().contains("\"h\""));
    store.enqueue(Lane::Webhook, job).await.unwrap();
    let all = recv.wait_seen(3).await;
    assert_eq!(all.len(), 3, "the old job was posted");
    let (sig, body) = &all[2];
    assert!(verify(sig, body), "bad signature {sig} for {body}");
    assert_eq!(
        serde_json::from_str::<Value>(body).unwrap(),
        delivered,
        "the same body as the job that carried the context"
    );
    gw.stop().await;
}

/// Unix ms of a callback's `at` (RFC 3339 UTC with milliseconds).
fn unix_ms(at: &str) -> i64 {
    at.parse::<jiff::Timestamp>().unwrap().as_millisecond()
}

#[tokio::test]
async fn callbacks_are_signed_retried_and_dead_lettered() {
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    let gw = start(&redis).await;
    let recv = Receiver {
        fail_first: 2,
        ..Default::default()
    };
    let url = spawn_receiver(recv.clone()).await;
    let mut req = sms("+48501234567");
    req["callback_url"] = json!(url);
    req["client_ref"] = json!("inv-9");
    let (code, body) = gw.post("/v1/messages", &req).await;
    assert_eq!(code, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    gw.wait_status(&id, Duration::from_secs(10), |s| s == "delivered")
        .await;

    // submitted + delivered, each delivered once, after 2 failed attempts in total.
    let seen = recv.wait_seen(2).await;
    let mut statuses: Vec<String> = Vec::new();
    for (sig, body) in &seen {
        assert!(verify(sig, body), "bad signature {sig} for {body}");
        assert!(
            !verify(sig, &body.replace("inv-9", "inv-8")),
            "signature must cover the body"
        );
        let v: Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["id"], id.as_str());
        assert_eq!(v["to"], "+48501234567");
        assert_eq!(v["client_ref"], "inv-9");
        assert_eq!(v["channel"], "sms");
        assert!(v["at"].as_str().unwrap().ends_with('Z'));
        statuses.push(v["status"].as_str().unwrap().to_string());
    }
    statuses.sort();
    assert_eq!(statuses, ["delivered", "submitted"]);
    // Every attempt of one status change carries the same event_id, distinct
    // per change, so a receiver can de-duplicate.
    let mut ids: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    for body in recv.attempts.lock().unwrap().iter() {
        let v: Value = serde_json::from_str(body).unwrap();
        let event = v["event_id"].as_str().expect("event_id").to_string();
        assert!(event.starts_with(&format!("{id}.")), "{event}");
        ids.entry(v["status"].as_str().unwrap().to_string())
            .or_default()
            .insert(event);
    }
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(
        ids.values().all(|e| e.len() == 1),
        "one event_id per change: {ids:?}"
    );
    assert_ne!(ids["submitted"], ids["delivered"]);
    assert_eq!(
        recv.calls.load(Ordering::SeqCst),
        4,
        "2 failures + 2 successes"
    );

    // A dead endpoint: 3 attempts, then the dead-letter queue and a metric.
    let dead = format!("http://127.0.0.1:{}/cb", goniec_testkit::free_port());
    let mut req = sms("+48501234569");
    req["callback_url"] = json!(dead);
    let (code, _) = gw.post("/v1/messages", &req).await;
    assert_eq!(code, 202);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let m = gw.metrics().await;
        if metric_sum(
            &m,
            "goniec_webhook_deliveries_total",
            &[("outcome", "dead")],
        ) >= 2.0
        {
            assert!(
                metric_sum(
                    &m,
                    "goniec_webhook_deliveries_total",
                    &[("outcome", "retry")]
                ) >= 4.0
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "callbacks were not dead-lettered:\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The operator sees them; a tenant key does not open the admin view.
    let r = gw
        .req(
            Method::GET,
            "/v1/admin/dead-letters?lane=webhook",
            ADMIN_KEY,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let entries = body["entries"].as_array().unwrap();
    assert!(entries.len() >= 2, "{body}");
    assert!(entries
        .iter()
        .all(|e| e["attempts"] == 3 && e["reason"].as_str().unwrap().starts_with("max_attempts")));
    let statuses: Vec<&str> = entries
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert!(
        statuses.contains(&"submitted") && statuses.contains(&"delivered"),
        "{body}"
    );
    let r = gw
        .req(Method::GET, "/v1/admin/dead-letters?lane=webhook", ACME_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = gw
        .req(Method::GET, "/v1/admin/dead-letters?lane=fax", ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    gw.stop().await;
}

#[tokio::test]
async fn redis_restart_while_accepting_gives_503_and_loses_nothing() {
    let Some(mut redis) = RedisServer::spawn() else {
        return;
    };
    let gw = start(&redis).await;
    let mut accepted = Vec::new();
    for i in 0..50 {
        let (code, body) = gw
            .post("/v1/messages", &sms(&format!("+4850100{i:04}")))
            .await;
        assert_eq!(code, 202, "{body}");
        accepted.push(body["id"].as_str().unwrap().to_string());
    }
    redis.stop();
    // During the outage: 503 with Retry-After, never 202, never 500.
    for i in 0..10 {
        let r = gw
            .req(Method::POST, "/v1/messages", ACME_KEY)
            .json(&sms(&format!("+4850200{i:04}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 503, "request {i} during the outage");
        assert!(r.headers().contains_key("retry-after"));
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["code"], "store-unavailable");
    }
    let batch = json!({"messages": [sms("+48503000001"), sms("+48503000002")]});
    let (code, _) = gw.post("/v1/messages/batch", &batch).await;
    assert_eq!(code, 503);
    gw.wait_ready(503, Duration::from_secs(5)).await;

    redis.restart();
    gw.wait_ready(200, Duration::from_secs(15)).await;
    for i in 0..10 {
        let (code, body) = gw
            .post("/v1/messages", &sms(&format!("+4850400{i:04}")))
            .await;
        assert_eq!(code, 202, "after restart: {body}");
        accepted.push(body["id"].as_str().unwrap().to_string());
    }
    for id in &accepted {
        gw.wait_status(id, Duration::from_secs(30), |s| s == "delivered")
            .await;
    }
    gw.stop().await;
}

#[tokio::test]
async fn sigterm_drain_refuses_new_work_and_finishes_in_flight() {
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    let slow = CONNECTORS.replace(
        "receipt_delay = \"20ms\"",
        "receipt_delay = \"20ms\"\nlatency = \"300ms\"",
    );
    let gw = TestGateway::start(parse(&config_toml(Some(&redis.url()), &slow))).await;
    gw.wait_ready(200, Duration::from_secs(10)).await;
    let (code, body) = gw.post("/v1/messages", &sms("+48501234567")).await;
    assert_eq!(code, 202);
    let id = body["id"].as_str().unwrap().to_string();
    gw.wait_status(&id, Duration::from_secs(5), |s| s == "queued")
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await; // now in flight at the connector
    gw.shutdown.cancel();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let r = gw
        .req(Method::POST, "/v1/messages", ACME_KEY)
        .json(&sms("+48501234568"))
        .send()
        .await;
    if let Ok(r) = r {
        assert_eq!(r.status(), 503);
        assert_eq!(r.json::<Value>().await.unwrap()["code"], "shutting-down");
    }
    gw.stop().await;
    // The in-flight submit finished and was recorded before the gateway let go.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("*:m:{id}"))
        .query_async(&mut c)
        .await
        .unwrap();
    let status: String = redis::cmd("HGET")
        .arg(&keys[0])
        .arg("s")
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(
        status == "submitted" || status == "delivered",
        "in-flight message ended {status}"
    );
}

/// Fairness: with one tenant's backlog of 6,000 messages in the queue, another
/// tenant sending one message every 100 ms still gets each submitted within a
/// second, long before the backlog drains (one FIFO queue would make them wait
/// behind it for seconds).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenants_backlog_does_not_hold_up_another() {
    use goniec_testkit::gateway::OTHER_KEY;
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    // 32 in flight, 100 ms each: about 320 submits a second, so the backlog
    // takes some 20 s to drain.
    let connectors = r#"
[[connectors]]
name = "slow"
kind = "stub"
channels = ["sms"]
latency = "100ms"

[[routes]]
channel = "sms"
connector = "slow"
"#;
    let gw = TestGateway::start(parse(&config_toml(Some(&redis.url()), connectors))).await;
    gw.wait_ready(200, Duration::from_secs(10)).await;
    let mut backlog = Vec::new();
    for b in 0..6 {
        let messages: Vec<Value> = (0..1000)
            .map(|i| sms(&format!("+48503{:06}", b * 1000 + i)))
            .collect();
        let (code, body) = gw
            .post("/v1/messages/batch", &json!({ "messages": messages }))
            .await;
        assert_eq!(
            code,
            202,
            "{}",
            &body.to_string()[..300.min(body.to_string().len())]
        );
        assert_eq!(body["accepted"], 1000);
        backlog.extend(
            body["results"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].as_str().unwrap().to_string()),
        );
    }
    let mut other = Vec::new();
    for i in 0..10 {
        let r = gw
            .req(reqwest::Method::POST, "/v1/messages", OTHER_KEY)
            .json(&sms(&format!("+48504{i:06}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 202);
        let body: Value = r.json().await.unwrap();
        other.push(body["id"].as_str().unwrap().to_string());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Each of them went from queued to submitted within a second.
    let event_ms = |m: &Value, status: &str| -> i64 {
        let at = m["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["status"] == status)
            .unwrap_or_else(|| panic!("no {status} event: {m}"))["at"]
            .as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .unwrap();
        at.as_millisecond()
    };
    let mut waits = Vec::new();
    for id in &other {
        let r = gw
            .req(
                reqwest::Method::GET,
                &format!("/v1/messages/{id}"),
                OTHER_KEY,
            )
            .send()
            .await
            .unwrap();
        let mut m: Value = r.json().await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while m["status"] == "queued" && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            m = gw
                .req(
                    reqwest::Method::GET,
                    &format!("/v1/messages/{id}"),
                    OTHER_KEY,
                )
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
        }
        waits.push(event_ms(&m, "submitted") - event_ms(&m, "queued"));
    }
    // The backlog was still there when the last of them went out.
    let mut left = 0;
    for id in backlog.iter().rev().take(200) {
        let (_, m) = gw.get(&format!("/v1/messages/{id}")).await;
        left += usize::from(m["status"] == "queued");
    }
    eprintln!("fairness: queued -> submitted of the other tenant's messages {waits:?} ms; {left} of the backlog's last 200 still queued");
    assert!(
        waits.iter().all(|&w| w < 1000),
        "each within a second: {waits:?}"
    );
    assert!(left > 0, "the test needs the backlog still queued");
    gw.stop().await;
}

/// `callback_batch`: a tenant's callbacks arrive as signed JSON arrays, several
/// status changes per POST, each with its own `event_id`; none is lost.
#[tokio::test]
async fn batched_callbacks_arrive_as_signed_arrays() {
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    let toml = config_toml(Some(&redis.url()), CONNECTORS).replacen(
        "allow_private_callbacks = true",
        "allow_private_callbacks = true\ncallback_batch = { max = 4, linger = \"300ms\" }",
        1,
    );
    assert!(toml.contains("callback_batch"), "the test config sets it");
    let gw = TestGateway::start(parse(&toml)).await;
    gw.wait_ready(200, Duration::from_secs(10)).await;
    let recv = Receiver::default();
    let url = spawn_receiver(recv.clone()).await;
    let mut ids = Vec::new();
    for i in 0..6 {
        let mut req = sms(&format!("+4850123460{i}"));
        req["callback_url"] = json!(url);
        let (code, body) = gw.post("/v1/messages", &req).await;
        assert_eq!(code, 202, "{body}");
        ids.push(body["id"].as_str().unwrap().to_string());
    }
    for id in &ids {
        gw.wait_status(id, Duration::from_secs(10), |s| s == "delivered")
            .await;
    }
    // 6 messages × (submitted, delivered) = 12 callbacks, in fewer POSTs.
    let events = |seen: &[(String, String)]| -> usize {
        seen.iter()
            .map(|(_, b)| {
                serde_json::from_str::<Value>(b)
                    .unwrap()
                    .as_array()
                    .map_or(0, Vec::len)
            })
            .sum()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while events(&recv.seen.lock().unwrap()) < 12 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seen = recv.seen.lock().unwrap().clone();
    let mut got: Vec<(String, String)> = Vec::new();
    for (sig, body) in &seen {
        assert!(verify(sig, body), "the array is signed as one body");
        let batch: Value = serde_json::from_str(body).unwrap();
        let items = batch.as_array().expect("a JSON array");
        assert!((1..=4).contains(&items.len()), "at most max per POST");
        for v in items {
            assert!(v["event_id"].as_str().is_some(), "{v}");
            got.push((
                v["id"].as_str().unwrap().to_string(),
                v["status"].as_str().unwrap().to_string(),
            ));
        }
    }
    got.sort();
    let mut want: Vec<(String, String)> = ids
        .iter()
        .flat_map(|id| {
            [
                (id.clone(), "delivered".to_string()),
                (id.clone(), "submitted".to_string()),
            ]
        })
        .collect();
    want.sort();
    assert_eq!(got, want, "every change once");
    assert!(
        seen.len() < 12,
        "batched: {} POSTs for 12 callbacks",
        seen.len()
    );
    gw.stop().await;
}
