//! Issue 12 item 5: a message whose receipt never comes must not stay `submitted`
//! for ever. Against the SMSC simulator on the real wire and a real Redis: receipts
//! the SMSC lost are asked for with `query_sm`; a message the SMSC forgot expires
//! with reason `no_receipt` after its validity and a grace, with a callback and a
//! metric; receipt ids in another base still match; a connector whose receipts match
//! nothing shows in `/readyz`; and the check survives a gateway restart.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use goniec_sims::smsc::{SimConfig, SmscSim};
use goniec_testkit::gateway::{config_toml, metric_sum, parse, TestGateway};
use goniec_testkit::RedisServer;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

/// The simulator and the config of a gateway with one SMPP connector (`smsc`) to it;
/// `extra` adds keys to the connector.
async fn setup(
    redis: &RedisServer,
    sim: SimConfig,
    extra: &str,
) -> (goniec_config::Config, SmscSim, CancellationToken) {
    let stop = CancellationToken::new();
    let s = SmscSim::start("127.0.0.1:0".parse().unwrap(), sim.clone(), stop.clone())
        .await
        .unwrap();
    let connectors = format!(
        r#"
[[connectors]]
name = "smsc"
kind = "smpp"
port = {port}
system_id = "{sid}"
password = "{pw}"
binds = 1
window = 50
response_timeout = "2s"
{extra}

[[routes]]
channel = "sms"
connector = "smsc"
"#,
        port = s.local_addr().port(),
        sid = sim.system_id,
        pw = sim.password,
    );
    (
        parse(&config_toml(Some(&redis.url()), &connectors)),
        s,
        stop,
    )
}

async fn start(cfg: goniec_config::Config) -> TestGateway {
    let gw = TestGateway::start(cfg).await;
    gw.wait_ready(200, Duration::from_secs(10)).await;
    gw
}

async fn send(gw: &TestGateway, body: Value) -> String {
    let (code, r) = gw.post("/v1/messages", &body).await;
    assert_eq!(code, 202, "{r}");
    r["id"].as_str().unwrap().to_string()
}

fn sms(i: usize) -> Value {
    json!({"channel": "sms", "to": format!("+48501{i:06}"), "text": "Przypomnienie o płatności"})
}

const FINAL: &[&str] = &["delivered", "undeliverable", "expired", "failed"];

/// Poll until every message is final; returns them as last read.
async fn wait_final(gw: &TestGateway, ids: &[String], within: Duration) -> Vec<Value> {
    let deadline = Instant::now() + within;
    loop {
        let mut out = Vec::new();
        for id in ids {
            let (code, m) = gw.get(&format!("/v1/messages/{id}")).await;
            assert_eq!(code, 200, "{m}");
            out.push(m);
        }
        let open: Vec<&Value> = out
            .iter()
            .filter(|m| !FINAL.contains(&m["status"].as_str().unwrap_or("")))
            .collect();
        if open.is_empty() {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} not final after {within:?}, e.g. {}",
            open.len(),
            ids.len(),
            open[0]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn count(msgs: &[Value], status: &str) -> usize {
    msgs.iter().filter(|m| m["status"] == status).count()
}

/// The event that made the message final.
fn last_event(m: &Value) -> Value {
    m["events"].as_array().unwrap().last().unwrap().clone()
}

fn event_ms(e: &Value) -> i64 {
    e["at"]
        .as_str()
        .unwrap()
        .parse::<jiff::Timestamp>()
        .unwrap()
        .as_millisecond()
}

async fn wait_metric(gw: &TestGateway, name: &str, labels: &[(&str, &str)], want: f64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = metric_sum(&gw.metrics().await, name, labels);
        if got >= want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name}{labels:?} = {got} < {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// (a) The SMSC lost a third of the receipts (a crash, or another bind took them)
/// but still knows the messages: asked with query_sm, each lost one reaches its real
/// final state, delivered or undeliverable. Those whose receipt came are not asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_receipts_are_resolved_by_asking_the_smsc() {
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    let sim = SimConfig {
        lose_receipts_every: 3,
        undeliverable_every: 4,
        receipt_delay: Duration::from_millis(20),
        ..SimConfig::default()
    };
    let (cfg, sim, stop) = setup(&redis, sim, r#"query_after = "1s""#).await;
    let gw = start(cfg).await;
    let mut ids = Vec::new();
    for i in 0..12 {
        ids.push(send(&gw, sms(i)).await);
    }
    let msgs = wait_final(&gw, &ids, Duration::from_secs(30)).await;
    // Message numbers 4, 8, 12 are undeliverable; the receipts of 3, 6, 9, 12 lost.
    assert_eq!(
        (count(&msgs, "delivered"), count(&msgs, "undeliverable")),
        (9, 3),
        "{msgs:?}"
    );
    let by_query: Vec<&Value> = msgs
        .iter()
        .filter(|m| last_event(m)["detail"] == "query_sm to smsc")
        .collect();
    assert_eq!(by_query.len(), 4, "{msgs:?}");
    assert_eq!(
        count(
            &by_query.into_iter().cloned().collect::<Vec<_>>(),
            "undeliverable"
        ),
        1
    );
    let stats = sim.stats();
    assert_eq!((stats.receipts_lost, stats.queries), (4, 4), "{stats:?}");
    let m = gw.metrics().await;
    let queries = |outcome| {
        metric_sum(
            &m,
            "goniec_receipt_queries_total",
            &[("connector", "smsc"), ("outcome", outcome)],
        )
    };
    assert_eq!((queries("delivered"), queries("undeliverable")), (3.0, 1.0));
    assert_eq!(metric_sum(&m, "goniec_no_receipt_total", &[]), 0.0);
    gw.stop().await;
    stop.cancel();
}

/// Every part of a long message is asked about: it is delivered when all are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_part_of_a_long_message_is_asked_about() {
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    let sim = SimConfig {
        lose_receipts_every: 1,
        receipt_delay: Duration::from_millis(20),
        ..SimConfig::default()
    };
    let (cfg, sim, stop) = setup(&redis, sim, r#"query_after = "1s""#).await;
    let gw = start(cfg).await;
    let long = "Zażółć gęślą jaźń. ".repeat(10); // 3 UCS-2 parts
    let id = send(
        &gw,
        json!({"channel": "sms", "to": "+48501000001", "text": long}),
    )
    .await;
    let m = gw
        .wait_status(&id, Duration::from_secs(20), |s| s == "delivered")
        .await;
    let parts = m["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["detail"].as_str().is_some_and(|d| d.starts_with("part ")))
        .count();
    assert_eq!(parts, 2, "two parts first, then the last one: {m}");
    assert_eq!(last_event(&m)["detail"], "query_sm to smsc");
    assert_eq!(sim.stats().queries, 3);
    gw.stop().await;
    stop.cancel();
}

/// A callback receiver that records every body.
async fn receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    use axum::{routing::post, Router};
    let seen: Arc<Mutex<Vec<Value>>> = Default::default();
    let s = seen.clone();
    let app = Router::new().route(
        "/cb",
        post(move |body: String| {
            let s = s.clone();
            async move {
                s.lock()
                    .unwrap()
                    .push(serde_json::from_str(&body).unwrap_or(Value::Null));
                axum::http::StatusCode::OK
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/cb", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (url, seen)
}

/// (b) The SMSC lost the receipts and forgot the messages (query_sm answers
/// ESME_RQUERYFAIL): after validity + grace, `expired` with reason `no_receipt`, a
/// callback saying so, and the metric. Not a moment before the deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_the_smsc_forgot_expires_with_no_receipt() {
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    let sim = SimConfig {
        lose_receipts_every: 1,
        forget_lost: true,
        ..SimConfig::default()
    };
    let extra = r#"
query_after = "1s"
query_max = 1
default_validity = "2s"
receipt_grace = "1s"
"#;
    let (cfg, sim, stop) = setup(&redis, sim, extra).await;
    let gw = start(cfg).await;
    let (url, calls) = receiver().await;
    // One with the default validity, one with its own (later) valid_until.
    let mut a = sms(1);
    a["callback_url"] = json!(url);
    let valid_until_ms = jiff::Timestamp::now().as_millisecond() + 5_000;
    let mut b = sms(2);
    b["callback_url"] = json!(url);
    b["valid_until"] = json!(jiff::Timestamp::from_millisecond(valid_until_ms)
        .unwrap()
        .to_string());
    let (a, b) = (send(&gw, a).await, send(&gw, b).await);
    let msgs = wait_final(&gw, &[a, b], Duration::from_secs(30)).await;
    for m in &msgs {
        assert_eq!(m["status"], "expired", "{m}");
        let last = last_event(m);
        assert_eq!(last["reason"], "no_receipt", "{m}");
        assert!(
            last["detail"].as_str().unwrap().contains("ESME_RQUERYFAIL"),
            "{last}"
        );
    }
    let submitted_at = |m: &Value| {
        m["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["status"] == "submitted")
            .map(event_ms)
            .unwrap()
    };
    // a: submission + 2 s validity + 1 s grace; b: its valid_until + 1 s grace.
    let expired_a = event_ms(&last_event(&msgs[0]));
    assert!(
        expired_a >= submitted_at(&msgs[0]) + 3_000,
        "expired {} ms after submission",
        expired_a - submitted_at(&msgs[0])
    );
    assert!(event_ms(&last_event(&msgs[1])) >= valid_until_ms + 1_000);
    // The customer hears about it like any other final status.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let expired: Vec<Value> = calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c["status"] == "expired")
            .cloned()
            .collect();
        if expired.len() == 2 {
            assert!(
                expired.iter().all(|c| c["error"] == "no_receipt"),
                "{expired:?}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "callbacks: {:?}",
            calls.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let m = gw.metrics().await;
    assert_eq!(
        metric_sum(&m, "goniec_no_receipt_total", &[("connector", "smsc")]),
        2.0
    );
    // Asked after 1 s and once more at the deadline, for each.
    assert!(
        metric_sum(
            &m,
            "goniec_receipt_queries_total",
            &[("connector", "smsc"), ("outcome", "unknown")]
        ) >= 4.0,
        "{m}"
    );
    assert!(sim.stats().queries_failed >= 4);
    gw.stop().await;
    stop.cancel();
}

/// (c) The SMSC answers submits in hex and writes receipt ids in decimal while the
/// connector says `receipt_ids = "same"`: the receipts still find their messages,
/// by the other spelling, without any query_sm.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decimal_receipt_ids_still_match_hex_submit_ids() {
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    let sim = SimConfig {
        receipt_ids_decimal: true,
        first_id: 0x10_0000_0000,
        receipt_delay: Duration::from_millis(20),
        ..SimConfig::default()
    };
    let (cfg, _sim, stop) = setup(&redis, sim, r#"query_after = "0s""#).await;
    let gw = start(cfg).await;
    let mut ids = Vec::new();
    for i in 0..30 {
        ids.push(send(&gw, sms(i)).await);
    }
    let msgs = wait_final(&gw, &ids, Duration::from_secs(40)).await;
    assert_eq!(count(&msgs, "delivered"), 30, "{msgs:?}");
    assert!(msgs
        .iter()
        .all(|m| last_event(m)["detail"] == "receipt from smsc"));
    let m = gw.metrics().await;
    assert_eq!(
        metric_sum(
            &m,
            "goniec_receipt_ids_converted_total",
            &[("connector", "smsc")]
        ),
        30.0
    );
    assert_eq!(metric_sum(&m, "goniec_receipts_unmatched_total", &[]), 0.0);
    let (_, ready) = gw.get("/readyz").await;
    assert!(ready.get("degraded").is_none(), "{ready}");
    gw.stop().await;
    stop.cancel();
}

/// (c) A connector whose receipts mostly match nothing is reported in `/readyz`
/// (still ready: messages go out) and in the metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_that_match_nothing_show_in_readyz() {
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    let sim = SimConfig {
        receipt_delay: Duration::from_millis(10),
        resend_after: Duration::from_secs(30),
        ..SimConfig::default()
    };
    let (cfg, sim, stop) = setup(&redis, sim, "").await;
    let gw = start(cfg).await;
    let id = send(&gw, sms(1)).await;
    gw.wait_status(&id, Duration::from_secs(10), |s| s == "delivered")
        .await;
    let (_, ready) = gw.get("/readyz").await;
    assert!(ready.get("degraded").is_none(), "{ready}");
    for _ in 0..25 {
        sim.send_receipt_for_unknown_id("goniec");
    }
    wait_metric(
        &gw,
        "goniec_receipts_unmatched_total",
        &[("connector", "smsc")],
        25.0,
    )
    .await;
    let r = gw.http.get(gw.url("/readyz")).send().await.unwrap();
    assert_eq!(
        r.status().as_u16(),
        200,
        "unmatched receipts do not stop sending"
    );
    let ready: Value = r.json().await.unwrap();
    assert_eq!(ready["ready"], true);
    let degraded = ready["degraded"].as_array().expect("a degraded list");
    assert_eq!(degraded.len(), 1, "{ready}");
    assert_eq!(
        degraded[0],
        "connector smsc: 25 of the last 26 receipts matched no message (receipt ids in another format, or another bind with the same account taking our receipts?)"
    );
    let m = gw.metrics().await;
    let ratio = metric_sum(
        &m,
        "goniec_receipts_unmatched_ratio",
        &[("connector", "smsc")],
    );
    assert!((ratio - 25.0 / 26.0).abs() < 1e-9, "{ratio}");
    gw.stop().await;
    stop.cancel();
}

/// (d) The check is in the store from the moment the message is `submitted`: a
/// gateway stopped before it was due leaves it to the next one on the same Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_between_submit_and_check_keeps_the_check() {
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    let sim = SimConfig {
        lose_receipts_every: 1,
        receipt_delay: Duration::from_millis(20),
        ..SimConfig::default()
    };
    let (cfg, sim, stop) = setup(&redis, sim, r#"query_after = "4s""#).await;
    let gw = start(cfg.clone()).await;
    let t0 = Instant::now();
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(send(&gw, sms(i)).await);
    }
    for id in &ids {
        gw.wait_status(id, Duration::from_secs(10), |s| s == "submitted")
            .await;
    }
    gw.stop().await;
    assert!(
        t0.elapsed() < Duration::from_secs(4),
        "stopped before any check was due ({:?})",
        t0.elapsed()
    );
    assert_eq!(sim.stats().queries, 0);
    let gw = start(cfg).await;
    let msgs = wait_final(&gw, &ids, Duration::from_secs(20)).await;
    for m in &msgs {
        assert_eq!(m["status"], "delivered", "{m}");
        assert_eq!(last_event(m)["detail"], "query_sm to smsc", "{m}");
    }
    assert_eq!(sim.stats().queries, 3);
    gw.stop().await;
    stop.cancel();
}

/// `goniec smsc-sim --lose-receipts-every N` as a process: the flag reaches the
/// simulator, which loses the receipt and still answers query_sm for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smsc_sim_command_loses_receipts_on_request() {
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    let sim = goniec_testkit::smsc_process::SmscProcess::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_goniec")),
        &["--receipt-delay", "10ms", "--lose-receipts-every", "1"],
    )
    .await;
    let (smpp, http) = (sim.smpp, sim.http.clone());
    let connectors = format!(
        r#"
[[connectors]]
name = "smsc"
kind = "smpp"
port = {}
password = "secret"
query_after = "1s"

[[routes]]
channel = "sms"
connector = "smsc"
"#,
        smpp.port()
    );
    let gw = start(parse(&config_toml(Some(&redis.url()), &connectors))).await;
    let id = send(&gw, sms(1)).await;
    let m = gw
        .wait_status(&id, Duration::from_secs(15), |s| s == "delivered")
        .await;
    assert_eq!(last_event(&m)["detail"], "query_sm to smsc", "{m}");
    let stats: Value = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("{http}/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (&stats["receipts_lost"], &stats["queries"]),
        (&json!(1), &json!(1)),
        "{stats}"
    );
    gw.stop().await;
    drop(sim); // killed (kill_on_drop)
}
