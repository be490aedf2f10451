//! The first vertical slice end to end on the real wire: HTTP API → Redis queue →
//! SMPP connector → SMSC simulator (SMPP 3.4 over TCP) → deliver_sm receipt →
//! status. Each test spawns its own redis-server and simulator on free ports.

use std::time::Duration;

use goniec_connectors::smpp::sim::{SimConfig, SmscSim};
use goniec_gateway::testing::gateway::{config_toml, metric_sum, parse, TestGateway};
use goniec_gateway::testing::RedisServer;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

async fn start(
    redis: &RedisServer,
    sim: SimConfig,
    extra: &str,
) -> (TestGateway, SmscSim, CancellationToken) {
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
binds = 2
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
    let gw = TestGateway::start(parse(&config_toml(Some(&redis.url()), &connectors))).await;
    gw.wait_ready(200, Duration::from_secs(10)).await;
    (gw, s, stop)
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
    assert!(sim.stats().throttled >= 3, "{:?}", sim.stats());
    let m = gw.metrics().await;
    assert!(
        metric_sum(
            &m,
            "goniec_connector_submits_total",
            &[("connector", "smsc"), ("outcome", "throttled")]
        ) >= 3.0
    );
    gw.stop().await;
    stop.cancel();
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
    use goniec_gateway::testing::gateway::{config_toml_with, OTHER_KEY};
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
    let antifraud = r#"[antifraud]
[antifraud.defaults.contact]
weekdays = "00:00-24:00"
saturday = "00:00-24:00"
sunday = "00:00-24:00"
holidays = "none"
"#;
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
        antifraud,
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
