//! The first vertical slice end to end on the real wire: HTTP API → Redis queue →
//! SMPP connector → SMSC simulator (SMPP 3.4 over TCP) → deliver_sm receipt →
//! status. Each test spawns its own redis-server and simulator on free ports.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use goniec_sims::smsc::{SimConfig, SmscSim};
use goniec_testkit::gateway::{
    config_toml, metric_sum, parse, TestGateway, ACME_KEY, ADMIN_KEY, ANTIFRAUD_OPEN_HOURS,
};
use goniec_testkit::{RedisCluster, RedisServer};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

async fn start(
    redis: &RedisServer,
    sim: SimConfig,
    extra: &str,
) -> (TestGateway, SmscSim, CancellationToken) {
    start_binds(redis, sim, 2, extra).await
}

/// [`start`] with `binds` binds.
async fn start_binds(
    redis: &RedisServer,
    sim: SimConfig,
    binds: usize,
    extra: &str,
) -> (TestGateway, SmscSim, CancellationToken) {
    start_on(Some(&redis.url()), sim, binds, extra).await
}

/// [`start_binds`] on any store: a Redis URL, a `redis-cluster://` URL, or
/// `None` for the memory store.
async fn start_on(
    store: Option<&str>,
    sim: SimConfig,
    binds: usize,
    extra: &str,
) -> (TestGateway, SmscSim, CancellationToken) {
    let stop = CancellationToken::new();
    let s = SmscSim::start("127.0.0.1:0".parse().unwrap(), sim.clone(), stop.clone())
        .await
        .unwrap();
    let gw = gateway_on(store, s.local_addr().port(), &sim, binds, extra).await;
    (gw, s, stop)
}

/// A gateway with one SMPP connector to the SMSC on `port`.
async fn gateway_for(
    redis: &RedisServer,
    port: u16,
    sim: &SimConfig,
    binds: usize,
    extra: &str,
) -> TestGateway {
    gateway_on(Some(&redis.url()), port, sim, binds, extra).await
}

/// [`gateway_for`] on any store (see [`start_on`]).
async fn gateway_on(
    store: Option<&str>,
    port: u16,
    sim: &SimConfig,
    binds: usize,
    extra: &str,
) -> TestGateway {
    let connectors = format!(
        r#"
[[connectors]]
name = "smsc"
kind = "smpp"
port = {port}
system_id = "{sid}"
password = "{pw}"
binds = {binds}
window = 50
response_timeout = "2s"
{extra}

[[routes]]
channel = "sms"
connector = "smsc"
"#,
        sid = sim.system_id,
        pw = sim.password,
    );
    let gw = TestGateway::start(parse(&config_toml(store, &connectors))).await;
    gw.wait_ready(200, Duration::from_secs(10)).await;
    gw
}

fn sms(to: &str, text: &str) -> Value {
    json!({"channel": "sms", "to": to, "text": text})
}

async fn send(gw: &TestGateway, body: Value) -> String {
    let (code, r) = gw.post("/v1/messages", &body).await;
    assert_eq!(code, 202, "{r}");
    r["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn sms_single_and_multipart_are_delivered_with_receipts() {
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    let (gw, sim, stop) = start(
        &redis,
        SimConfig {
            receipt_delay: Duration::from_millis(20),
            ..Default::default()
        },
        "",
    )
    .await;
    let gsm = send(
        &gw,
        sms(
            "+48501234567",
            "Przypomnienie: zaleglosc 120,50 PLN. Zaplac: https://pay.example/abc €",
        ),
    )
    .await;
    let ucs2 = send(&gw, sms("+48501234568", "Dzień dobry, zaległość 120,50 zł")).await;
    let long = "Zażółć gęślą jaźń. ".repeat(10); // 190 UCS-2 units: 3 parts
    let (code, r) = gw.post("/v1/messages", &sms("+48501234569", &long)).await;
    assert_eq!((code, r["segments"].as_u64()), (202, Some(3)), "{r}");
    let multi = r["id"].as_str().unwrap().to_string();

    for id in [&gsm, &ucs2, &multi] {
        let m = gw
            .wait_status(id, Duration::from_secs(15), |s| s == "delivered")
            .await;
        let ev = m["events"].as_array().unwrap();
        assert!(
            ev.iter().any(|e| e["detail"]
                .as_str()
                .is_some_and(|d| d.contains("connector=smsc"))),
            "{m}"
        );
    }
    let m = gw
        .wait_status(&multi, Duration::from_secs(1), |s| s == "delivered")
        .await;
    let submitted = m["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["status"] == "submitted")
        .unwrap()
        .clone();
    assert!(
        submitted["detail"].as_str().unwrap().contains("parts=3"),
        "{submitted}"
    );
    // Delivered only once all three parts were: two part events, then the final one.
    let part_events = m["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["detail"].as_str().is_some_and(|d| d.starts_with("part ")))
        .count();
    assert_eq!(part_events, 2, "{m}");
    // The SMSC saw 1 + 1 + 3 submit_sm and every receipt was acknowledged after storage.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while sim.stats().receipts_acked < 5 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let st = sim.stats();
    assert_eq!(st.submits, 5, "{st:?}");
    assert_eq!(st.receipts_acked, 5, "{st:?}");
    let metrics = gw.metrics().await;
    assert_eq!(
        metric_sum(&metrics, "goniec_receipts_total", &[("state", "delivered")]),
        5.0
    );
    assert_eq!(
        metric_sum(
            &metrics,
            "goniec_receipts_total",
            &[("state", "unknown_id")]
        ),
        0.0,
        "ids matched"
    );
    gw.stop().await;
    stop.cancel();
}

#[tokio::test]
async fn undeliverable_receipts_keep_the_carrier_error() {
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    let sim = SimConfig {
        undeliverable_every: 1,
        receipt_delay: Duration::from_millis(10),
        ..Default::default()
    };
    let (gw, _sim, stop) = start(&redis, sim, "").await;
    let id = send(&gw, sms("+48501234567", "hej")).await;
    let m = gw
        .wait_status(&id, Duration::from_secs(15), |s| s == "undeliverable")
        .await;
    let last = m["events"].as_array().unwrap().last().unwrap().clone();
    assert!(
        last["reason"].as_str().unwrap().contains("UNDELIV"),
        "{last}"
    );
    gw.stop().await;
    stop.cancel();
}

/// SMSCs without transceiver support: transmitters submit, receivers hear the
/// receipts, which this SMSC sends as data_sm.
#[tokio::test]
async fn transmitter_receiver_pairs_with_data_sm_receipts() {
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    let sim = SimConfig {
        receipts_as_data_sm: true,
        receipt_delay: Duration::from_millis(10),
        ..Default::default()
    };
    let extra = "bind_type = \"transmitter_receiver\"\naddress_range = \"^48\"";
    let (gw, sim, stop) = start(&redis, sim, extra).await;
    for _ in 0..100 {
        if sim.stats().binds == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(sim.stats().binds, 4, "two transmitter + receiver pairs");
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(send(&gw, sms(&format!("+4850123451{i}"), "hej")).await);
    }
    let long = "Przypominamy o zaległej płatności. ".repeat(4);
    ids.push(send(&gw, sms("+48501234520", &long)).await);
    for id in &ids {
        gw.wait_status(id, Duration::from_secs(15), |s| s == "delivered")
            .await;
    }
    let s = sim.stats();
    assert_eq!((s.submits, s.receipts_acked), (8, 8), "{s:?}");
    gw.stop().await;
    stop.cancel();
}

#[tokio::test]
async fn throttled_submits_are_retried_never_failed() {
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    let sim = SimConfig {
        throttle_every: 2,
        receipt_delay: Duration::from_millis(10),
        ..Default::default()
    };
    let (gw, sim, stop) = start(&redis, sim, "").await;
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(send(&gw, sms(&format!("+4850123450{i}"), "hej")).await);
    }
    for id in &ids {
        gw.wait_status(id, Duration::from_secs(30), |s| s == "delivered")
            .await;
    }
    let throttles = sim.stats().throttled;
    assert!(throttles >= 3, "{:?}", sim.stats());
    // The binds sent throttled submits again themselves: fewer went back to the
    // queue than the SMSC throttled, and none failed.
    let m = gw.metrics().await;
    let outcome = |o| {
        metric_sum(
            &m,
            "goniec_connector_submits_total",
            &[("connector", "smsc"), ("outcome", o)],
        )
    };
    assert!(outcome("throttled") < throttles as f64, "{throttles}");
    assert_eq!(outcome("permanent") + outcome("transient"), 0.0);
    // The console sees each bind: bound since its start, its window, its
    // answer time, and every throttle answer the SMSC gave.
    let binds = binds(&gw).await;
    assert_eq!(binds.len(), 2, "{binds:?}");
    for b in &binds {
        assert!(
            matches!(b["state"].as_str(), Some("up" | "throttled")),
            "{b}"
        );
        assert!(b["since_ms"].as_i64().unwrap() > 1_700_000_000_000, "{b}");
        assert_eq!(b["max_window"], 50, "{b}");
        assert!((1..=50).contains(&b["window"].as_u64().unwrap()), "{b}");
    }
    let counted: u64 = binds.iter().map(|b| b["throttles"].as_u64().unwrap()).sum();
    assert_eq!(counted, throttles, "{binds:?}");
    assert!(
        binds.iter().any(|b| b["response_ms"].as_f64().is_some()),
        "{binds:?}"
    );
    gw.stop().await;
    stop.cancel();
}

/// The SMPP binds as `GET /v1/admin/overview` shows them.
async fn binds(gw: &TestGateway) -> Vec<Value> {
    let r = gw
        .req(reqwest::Method::GET, "/v1/admin/overview", ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v["connectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "smsc")
        .expect("the smsc connector")["binds"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn a_dropped_smsc_loses_nothing() {
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    let sim_cfg = SimConfig {
        response_delay: Duration::from_millis(200),
        receipt_delay: Duration::from_millis(10),
        ..Default::default()
    };
    let (gw, sim, stop) = start(&redis, sim_cfg.clone(), "").await;
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(send(&gw, sms(&format!("+485012346{i:02}"), "hej")).await);
    }
    // Drop the SMSC with submits in flight (response_delay keeps the window full),
    // then bring one back on the same port.
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.cancel();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Down, with why and when it tries again, in the console's view.
    let down = binds(&gw).await;
    assert!(
        down.iter().all(|b| b["state"] == "down"
            && b["reason"].as_str().is_some()
            && b["reconnect_in_ms"].as_u64().unwrap() > 0),
        "{down:?}"
    );
    let stop2 = CancellationToken::new();
    let _sim2 = SmscSim::start(
        sim.local_addr(),
        SimConfig {
            response_delay: Duration::ZERO,
            ..sim_cfg
        },
        stop2.clone(),
    )
    .await
    .unwrap();
    for id in &ids {
        gw.wait_status(id, Duration::from_secs(30), |s| s == "delivered")
            .await;
    }
    // Each bind back up (the last may still wait out its back-off), its loss counted.
    let mut up = Vec::new();
    for _ in 0..100 {
        up = binds(&gw).await;
        if up.iter().all(|b| b["state"] == "up") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        up.iter().all(|b| b["state"] == "up"
            && b["reconnects"].as_u64().unwrap() >= 1
            && b["reconnect_in_ms"] == 0),
        "{up:?}"
    );
    gw.stop().await;
    stop2.cancel();
}

/// Receipts sent at once often arrive before the submit's correlation is stored;
/// each must wait for its own message, never land on another whose id looks alike
/// in another base (0x14 vs 14).
#[tokio::test]
async fn immediate_receipts_each_find_their_own_message() {
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    let sim = SimConfig {
        receipt_delay: Duration::ZERO,
        ..Default::default()
    };
    let (gw, sim, stop) = start(&redis, sim, "").await;
    let messages: Vec<Value> = (0..300)
        .map(|i| sms(&format!("+48501{i:06}"), "hej"))
        .collect();
    let (code, r) = gw
        .post("/v1/messages/batch", &json!({ "messages": messages }))
        .await;
    assert_eq!(code, 202, "{r}");
    let ids: Vec<String> = r["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap().to_string())
        .collect();
    for id in &ids {
        gw.wait_status(id, Duration::from_secs(30), |s| s == "delivered")
            .await;
    }
    assert_eq!(sim.stats().receipts_acked, 300);
    gw.stop().await;
    stop.cancel();
}

/// Every concatenation mode reaches the SMSC and comes back delivered with the part
/// count the API promised (message_payload sends the whole text in one submit_sm).
#[tokio::test]
async fn every_concatenation_mode_delivers_long_messages() {
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    for (concat, parts) in [("udh16", 3), ("sar", 3), ("payload", 1)] {
        let sim = SimConfig {
            receipt_delay: Duration::from_millis(5),
            ..Default::default()
        };
        let (gw, s, stop) = start(&redis, sim, &format!("concat = \"{concat}\"")).await;
        let long = "Zażółć gęślą jaźń. ".repeat(10); // 190 UCS-2 units
        let (code, r) = gw.post("/v1/messages", &sms("+48501234569", &long)).await;
        assert_eq!(
            (code, r["segments"].as_u64()),
            (202, Some(3)),
            "{concat}: {r}"
        );
        let id = r["id"].as_str().unwrap().to_string();
        let m = gw
            .wait_status(&id, Duration::from_secs(15), |st| st == "delivered")
            .await;
        let detail = m["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["status"] == "submitted")
            .unwrap()["detail"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            detail.contains(&format!("parts={parts}")),
            "{concat}: {detail}"
        );
        assert_eq!(s.stats().submits, parts, "{concat}");
        gw.stop().await;
        stop.cancel();
    }
}

/// A recipient replies `STOP` to the tenant's number: the SMSC delivers it as a
/// mobile-originated deliver_sm, the recipient is opted out for that tenant (the
/// reply is acknowledged only after that is stored), and the next message to them
/// is rejected. Any other reply changes nothing.
#[tokio::test]
async fn a_stop_reply_opts_the_recipient_out() {
    use goniec_testkit::gateway::{config_toml_with, OTHER_KEY};
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    let stop = CancellationToken::new();
    let sim_cfg = SimConfig::default();
    let sim = SmscSim::start(
        "127.0.0.1:0".parse().unwrap(),
        sim_cfg.clone(),
        stop.clone(),
    )
    .await
    .unwrap();
    // Tenant `other` sends from +48500100200 (its keys follow its table).
    let extra = format!(
        r#"senders = ["+48500100200"]

[[connectors]]
name = "smsc"
kind = "smpp"
port = {port}
password = "{pw}"

[[routes]]
channel = "sms"
connector = "smsc"
"#,
        port = sim.local_addr().port(),
        pw = sim_cfg.password,
    );
    let gw = TestGateway::start(parse(&config_toml_with(
        Some(&redis.url()),
        ANTIFRAUD_OPEN_HOURS,
        &extra,
    )))
    .await;
    gw.wait_ready(200, Duration::from_secs(10)).await;
    let post = |to: &'static str| {
        let gw = &gw;
        async move {
            let body = json!({"channel": "sms", "to": to, "text": "Przypomnienie o płatności", "from": "+48500100200"});
            let r = gw
                .req(reqwest::Method::POST, "/v1/messages", OTHER_KEY)
                .json(&body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    sim.send_mo("goniec", "+48601000099", "+48500100200", " Stop ")
        .unwrap();
    sim.send_mo("goniec", "+48601000098", "48500100200", "Zapłacę jutro")
        .unwrap();
    sim.send_mo("goniec", "+48601000097", "+48999999999", "STOP")
        .unwrap();
    let mut m = String::new();
    for _ in 0..200 {
        m = gw.metrics().await;
        let done = |o| metric_sum(&m, "goniec_inbound_messages_total", &[("outcome", o)]);
        if done("opt_out") + done("ignored") + done("unknown_recipient") >= 3.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    for outcome in ["opt_out", "ignored", "unknown_recipient"] {
        assert_eq!(
            metric_sum(&m, "goniec_inbound_messages_total", &[("outcome", outcome)]),
            1.0,
            "{outcome}"
        );
    }
    let (code, r) = post("+48601000099").await;
    assert_eq!(
        (code, r["reasons"][0].as_str()),
        (422, Some("opted_out")),
        "{r}"
    );
    let (code, r) = post("+48601000098").await;
    assert_eq!(
        code, 202,
        "a reply that is not a keyword changes nothing: {r}"
    );
    // Every reply was acknowledged to the SMSC (after it was handled).
    for _ in 0..100 {
        if sim.stats().receipts_acked >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(sim.stats().receipts_acked >= 3, "{:?}", sim.stats());
    gw.stop().await;
    stop.cancel();
}

const FINAL: [&str; 7] = [
    "delivered",
    "undeliverable",
    "expired",
    "failed",
    "read",
    "rejected",
    "cancelled",
];

/// Accept `n` SMS through `POST /v1/messages/batch`, 500 per request, each to its
/// own number; returns the ids in order.
async fn send_batch(gw: &TestGateway, n: usize, text: &str) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    let all: Vec<usize> = (0..n).collect();
    for chunk in all.chunks(500) {
        let messages: Vec<Value> = chunk
            .iter()
            .map(|i| sms(&format!("+48501{i:06}"), text))
            .collect();
        let (code, r) = gw
            .post("/v1/messages/batch", &json!({ "messages": messages }))
            .await;
        assert_eq!(code, 202, "{r}");
        let results = r["results"].as_array().unwrap();
        assert_eq!(results.len(), chunk.len(), "{r}");
        ids.extend(
            results
                .iter()
                .map(|x| x["id"].as_str().expect("accepted").to_string()),
        );
    }
    ids
}

/// `GET /v1/messages/{id}` for every id, 32 requests at a time.
async fn fetch_all(gw: &TestGateway, ids: &[String]) -> Vec<(String, Value)> {
    let mut tasks = tokio::task::JoinSet::new();
    let per_task = ids.len().div_ceil(32).max(1);
    for chunk in ids.chunks(per_task) {
        let chunk = chunk.to_vec();
        let http = gw.http.clone();
        let base = gw.url("/v1/messages/");
        tasks.spawn(async move {
            let mut out = Vec::with_capacity(chunk.len());
            for id in chunk {
                let r = http
                    .get(format!("{base}{id}"))
                    .bearer_auth(ACME_KEY)
                    .send()
                    .await
                    .expect("request");
                assert_eq!(r.status().as_u16(), 200, "{id}");
                out.push((id, r.json::<Value>().await.expect("json")));
            }
            out
        });
    }
    let mut all = Vec::with_capacity(ids.len());
    while let Some(r) = tasks.join_next().await {
        all.extend(r.expect("fetch task"));
    }
    all
}

/// Poll until every message is in a final status, or panic after `within` with a
/// count of the statuses still seen. Returns each message as last read.
async fn wait_final(gw: &TestGateway, ids: &[String], within: Duration) -> HashMap<String, Value> {
    let deadline = Instant::now() + within;
    let mut done = HashMap::new();
    let mut pending: Vec<String> = ids.to_vec();
    loop {
        let mut still = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (id, m) in fetch_all(gw, &pending).await {
            let status = m["status"].as_str().unwrap_or("?").to_string();
            if FINAL.contains(&status.as_str()) {
                done.insert(id, m);
            } else {
                *seen.entry(status).or_default() += 1;
                still.push(id);
            }
        }
        pending = still;
        if pending.is_empty() {
            return done;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} messages not final after {within:?}: {seen:?}; e.g. {}",
            pending.len(),
            ids.len(),
            fetch_all(gw, &pending[..1]).await[0].1
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How many messages are in each status.
fn count_statuses(msgs: &HashMap<String, Value>) -> HashMap<String, usize> {
    let mut n = HashMap::new();
    for m in msgs.values() {
        *n.entry(m["status"].as_str().unwrap_or("?").to_string())
            .or_default() += 1;
    }
    n
}

/// Wait until the gateway's `metric` with `labels` adds up to `want`.
async fn wait_metric(
    gw: &TestGateway,
    metric: &str,
    labels: &[(&str, &str)],
    want: f64,
    within: Duration,
) {
    let deadline = Instant::now() + within;
    loop {
        let got = metric_sum(&gw.metrics().await, metric, labels);
        if got >= want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{metric}{labels:?} is {got}, not {want}, after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Wait until the simulator's counters satisfy `ok`.
async fn wait_sim(
    sim: &SmscSim,
    within: Duration,
    ok: impl Fn(&goniec_sims::smsc::SimStats) -> bool,
) {
    let deadline = Instant::now() + within;
    while !ok(&sim.stats()) {
        assert!(Instant::now() < deadline, "{:?}", sim.stats());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// 10,000 messages through four binds, every one delivered with its receipt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_messages_over_four_binds_are_all_delivered() {
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    all_delivered_over_four_binds(Some(&redis.url()), 10_000).await;
}

/// The same path on a Redis Cluster of three masters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_messages_over_four_binds_are_all_delivered() {
    let Some(cluster) = RedisCluster::spawn() else {
        return;
    };
    all_delivered_over_four_binds(Some(&cluster.url()), 5_000).await;
}

/// The same path on the memory store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_memory_store_messages_over_four_binds_are_all_delivered() {
    all_delivered_over_four_binds(None, 5_000).await;
}

/// `n` messages (a multiple of 500) through four binds, every one delivered
/// with its receipt.
async fn all_delivered_over_four_binds(store: Option<&str>, n: usize) {
    let sim = SimConfig {
        receipt_delay: Duration::from_millis(10),
        ..Default::default()
    };
    let (gw, sim, stop) = start_on(store, sim, 4, "").await;
    wait_sim(&sim, Duration::from_secs(5), |s| s.binds == 4).await;
    let started = Instant::now();
    let ids = send_batch(&gw, n, "Przypomnienie o platnosci").await;
    let accepted = started.elapsed();
    // Receipt transitions are not in goniec_status_transitions_total; receipts are.
    wait_metric(
        &gw,
        "goniec_receipts_total",
        &[("state", "delivered")],
        n as f64,
        Duration::from_secs(60),
    )
    .await;
    let delivered = started.elapsed();
    let msgs = wait_final(&gw, &ids, Duration::from_secs(10)).await;
    let counts = count_statuses(&msgs);
    assert_eq!(counts.get("delivered"), Some(&n), "{counts:?}");
    let backend = store.map_or("memory", |u| u.split("://").next().unwrap_or("?"));
    eprintln!(
        "{n} messages on {backend}: accepted in {accepted:?}, all delivered after {delivered:?}"
    );
    wait_sim(&sim, Duration::from_secs(5), |s| {
        s.receipts_acked == n as u64
    })
    .await;
    let s = sim.stats();
    assert_eq!((s.submits, s.binds, s.sessions), (n as u64, 4, 4), "{s:?}");
    let m = gw.metrics().await;
    assert_eq!(
        metric_sum(&m, "goniec_receipts_total", &[("state", "delivered")]),
        n as f64
    );
    gw.stop().await;
    stop.cancel();
}

/// An SMSC that allows 200 submit_sm per second gets 600 at once: it throttles
/// many times, the gateway slows down and retries, nothing fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_max_tps_storm_is_throttled_never_failed() {
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    let sim = SimConfig {
        max_tps: 200,
        receipt_delay: Duration::from_millis(10),
        ..Default::default()
    };
    let (gw, sim, stop) = start(&redis, sim, "").await;
    let started = Instant::now();
    let ids = send_batch(&gw, 600, "hej").await;
    let msgs = wait_final(&gw, &ids, Duration::from_secs(40)).await;
    let counts = count_statuses(&msgs);
    assert_eq!(counts.get("delivered"), Some(&600), "{counts:?}");
    let s = sim.stats();
    eprintln!("max_tps storm: {:?}, {s:?}", started.elapsed());
    assert!(s.throttled_tps >= 20, "throttled many times: {s:?}");
    assert_eq!(s.throttled, s.throttled_tps, "{s:?}");
    assert_eq!(s.submits, 600, "{s:?}");
    let m = gw.metrics().await;
    let outcome = |o| {
        metric_sum(
            &m,
            "goniec_connector_submits_total",
            &[("connector", "smsc"), ("outcome", o)],
        )
    };
    // Most throttles were absorbed by the binds (narrower windows, pauses,
    // resends); none became a failure.
    assert_eq!(outcome("permanent") + outcome("transient"), 0.0);
    assert_eq!(
        metric_sum(
            &m,
            "goniec_status_transitions_total",
            &[("status", "failed")]
        ),
        0.0
    );
    gw.stop().await;
    stop.cancel();
}

/// The SMSC drops each connection abruptly after 150 PDUs, with submits in flight
/// (response_delay keeps the window busy) and their responses possibly lost: the
/// binds reconnect, every message still reaches a final state and none is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_dropped_mid_window_lose_nothing() {
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    let sim = SimConfig {
        drop_after: 150,
        response_delay: Duration::from_millis(20),
        receipt_delay: Duration::from_millis(10),
        ..Default::default()
    };
    let (gw, sim, stop) = start(&redis, sim, "").await;
    let ids = send_batch(&gw, 1_000, "hej").await;
    let msgs = wait_final(&gw, &ids, Duration::from_secs(60)).await;
    let counts = count_statuses(&msgs);
    let s = sim.stats();
    eprintln!("drop_after: {counts:?}, {s:?}");
    assert!(s.faults_dropped >= 5, "dropped repeatedly: {s:?}");
    // Every message is delivered: a dropped bind is the connection's fault and
    // never uses up a message's attempts.
    assert_eq!(counts.get("delivered"), Some(&1_000), "{counts:?}");
    gw.stop().await;
    stop.cancel();
}

/// Garbage from the SMSC (unknown commands, responses to nothing, impossible
/// command_lengths): the gateway nacks or reconnects, never panics, and every
/// message is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_from_the_smsc_is_survived() {
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    let sim = SimConfig {
        garbage_every: 40,
        receipt_delay: Duration::from_millis(10),
        ..Default::default()
    };
    let (gw, sim, stop) = start(&redis, sim, "").await;
    let ids = send_batch(&gw, 500, "hej").await;
    let msgs = wait_final(&gw, &ids, Duration::from_secs(60)).await;
    let counts = count_statuses(&msgs);
    let s = sim.stats();
    eprintln!("garbage_every: {counts:?}, {s:?}");
    assert_eq!(counts.get("delivered"), Some(&500), "{counts:?}");
    assert!(s.faults_garbage >= 6, "{s:?}");
    assert!(
        s.binds > 2,
        "impossible lengths made the binds reconnect: {s:?}"
    );
    // Bound again after all that.
    assert!(gw
        .http
        .get(gw.url("/readyz"))
        .send()
        .await
        .unwrap()
        .status()
        .is_success());
    gw.stop().await;
    stop.cancel();
}

/// Every 5th submit_sm is refused with ESME_RINVDSTADR: those messages fail with
/// that reason at once (no retry), the rest are delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_submits_fail_with_the_smpp_status() {
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    let sim = SimConfig {
        reject_every: 5,
        reject_status: 0x0B,
        receipt_delay: Duration::from_millis(10),
        ..Default::default()
    };
    let (gw, sim, stop) = start(&redis, sim, "").await;
    let ids = send_batch(&gw, 100, "hej").await;
    let msgs = wait_final(&gw, &ids, Duration::from_secs(30)).await;
    let counts = count_statuses(&msgs);
    assert_eq!(
        (counts.get("failed"), counts.get("delivered")),
        (Some(&20), Some(&80)),
        "{counts:?}"
    );
    for m in msgs.values().filter(|m| m["status"] == "failed") {
        let last = m["events"].as_array().unwrap().last().unwrap();
        assert!(
            last["reason"]
                .as_str()
                .is_some_and(|r| r.contains("ESME_RINVDSTADR")),
            "{m}"
        );
    }
    let s = sim.stats();
    assert_eq!((s.submits_rejected, s.submits), (20, 80), "{s:?}");
    let m = gw.metrics().await;
    assert_eq!(
        metric_sum(
            &m,
            "goniec_connector_submits_total",
            &[("connector", "smsc"), ("outcome", "permanent")]
        ),
        20.0
    );
    gw.stop().await;
    stop.cancel();
}

/// A receipt for an id the gateway never submitted is counted as `unknown_id` (after
/// it waited in case the submit was still being recorded) and acknowledged.
///
/// The gateway holds the deliver_sm_resp of such a receipt for its whole parking
/// time (~10 s); an SMSC that resends unanswered receipts after 10 s (the
/// simulator's default) resends it first, and the late answer to the first copy
/// does not stop that. So this SMSC waits 30 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_for_an_unknown_id_is_counted() {
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    let sim = SimConfig {
        receipt_delay: Duration::from_millis(10),
        resend_after: Duration::from_secs(30),
        ..Default::default()
    };
    let (gw, sim, stop) = start(&redis, sim, "").await;
    let unknown = |m: &str| {
        metric_sum(
            m,
            "goniec_receipts_total",
            &[("connector", "smsc"), ("state", "unknown_id")],
        )
    };
    assert_eq!(unknown(&gw.metrics().await), 0.0);
    sim.send_receipt_for_unknown_id("goniec");
    sim.send_receipt_for_unknown_id("goniec");
    // Known messages go on meanwhile.
    let id = send(&gw, sms("+48501234567", "hej")).await;
    gw.wait_status(&id, Duration::from_secs(10), |s| s == "delivered")
        .await;
    let deadline = Instant::now() + Duration::from_secs(25);
    loop {
        let got = unknown(&gw.metrics().await);
        if got >= 2.0 {
            assert_eq!(got, 2.0);
            break;
        }
        assert!(Instant::now() < deadline, "unknown_id receipts: {got}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Acknowledged, so the SMSC stops resending them.
    wait_sim(&sim, Duration::from_secs(5), |s| {
        s.receipts_acked == 3 && s.receipts_pending == 0
    })
    .await;
    assert_eq!(sim.stats().unknown_receipts_queued, 2);
    gw.stop().await;
    stop.cancel();
}

/// `goniec smsc-sim` as a process: its flags reach the simulator, and `--http`
/// serves the counters and injects replies and unknown receipts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smsc_sim_command_serves_stats_and_mo_over_http() {
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    let sim = goniec_testkit::smsc_process::SmscProcess::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_goniec")),
        &[
            "--receipt-delay",
            "10ms",
            "--reject-every",
            "2",
            "--reject-status",
            "ESME_RINVDSTADR",
        ],
    )
    .await;
    let (smpp, http) = (sim.smpp, sim.http.clone());
    let gw = gateway_for(&redis, smpp.port(), &SimConfig::default(), 1, "").await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let stats = || async {
        let r = client.get(format!("{http}/stats")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
        r.json::<Value>().await.unwrap()
    };
    assert_eq!(stats().await["binds"], 1);

    // --reject-every 2: the first message goes through, the second is refused.
    let a = send(&gw, sms("+48501234567", "hej")).await;
    gw.wait_status(&a, Duration::from_secs(10), |s| s == "delivered")
        .await;
    let b = send(&gw, sms("+48501234568", "hej")).await;
    let m = gw
        .wait_status(&b, Duration::from_secs(10), |s| s == "failed")
        .await;
    assert!(m.to_string().contains("ESME_RINVDSTADR"), "{m}");

    // A reply, injected over HTTP, reaches the gateway.
    let r = client
        .post(format!("{http}/mo"))
        .json(&json!({"system_id": "goniec", "from": "+48601000098", "to": "48500100200", "text": "Zapłacę jutro"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let r = client
        .post(format!("{http}/mo"))
        .json(&json!({"from": "+48601000098", "text": "no destination"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let r = client
        .post(format!("{http}/receipts/unknown"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    assert_eq!(r.json::<Value>().await.unwrap()["message_id"], "F000000001");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = gw.metrics().await;
        if metric_sum(&m, "goniec_inbound_messages_total", &[]) >= 1.0 {
            break;
        }
        assert!(Instant::now() < deadline, "the reply never arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let s = stats().await;
    assert_eq!(
        (
            &s["submits"],
            &s["submits_rejected"],
            &s["mo_queued"],
            &s["unknown_receipts_queued"]
        ),
        (&json!(1), &json!(1), &json!(1), &json!(1)),
        "{s}"
    );
    gw.stop().await;
    drop(sim); // killed (kill_on_drop)
}
