//! Replies from recipients over SMPP (mobile-originated deliver_sm from the SMSC
//! simulator) are forwarded, signed and retried, to the tenant owning the number.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use goniec_sims::smsc::{SimConfig, SmscSim};
use goniec_testkit::gateway::{config_toml, parse, verify_signature, TestGateway, SECRET};
use goniec_testkit::RedisServer;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// A receiver that answers 500 to its first request, then records (signature, body).
async fn receiver() -> (String, Seen) {
    use axum::{http::HeaderMap, http::StatusCode, routing::post, Router};
    let seen: Seen = Arc::default();
    let calls = Arc::new(AtomicUsize::new(0));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let s = seen.clone();
    let app = Router::new().route(
        "/inbound",
        post(move |headers: HeaderMap, body: String| {
            let (s, calls) = (s.clone(), calls.clone());
            async move {
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    return StatusCode::INTERNAL_SERVER_ERROR;
                }
                let sig = headers["goniec-signature"].to_str().unwrap().to_string();
                s.lock().unwrap().push((sig, body));
                StatusCode::OK
            }
        }),
    );
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (format!("http://{addr}/inbound"), seen)
}

#[tokio::test]
async fn replies_are_forwarded_signed_to_the_owning_tenant() {
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
    let (url, seen) = receiver().await;
    // Tenant `other` owns +48500100200 and takes replies (its keys follow its table).
    let extra = format!(
        r#"senders = ["+48500100200"]
inbound_url = "{url}"
allow_private_callbacks = true

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
    let gw = TestGateway::start(parse(&config_toml(Some(&redis.url()), &extra))).await;
    gw.wait_ready(200, Duration::from_secs(10)).await;

    sim.send_mo(
        "goniec",
        "+48601000123",
        "48500100200",
        "Zapłacę w piątek, dziękuję",
    )
    .unwrap();
    for _ in 0..200 {
        if !seen.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let got = seen.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "delivered once, after one retry: {got:?}");
    let (sig, body) = &got[0];
    assert!(
        verify_signature(SECRET, sig, body),
        "signed with the tenant's secret: {sig}"
    );
    let v: Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["type"], "inbound");
    assert_eq!(v["from"], "+48601000123");
    assert_eq!(v["to"], "48500100200");
    assert_eq!(v["text"], "Zapłacę w piątek, dziękuję");
    assert_eq!(v["channel"], "sms");
    assert_eq!(sim.stats().receipts_acked, 1, "acknowledged to the SMSC");
    gw.stop().await;
    stop.cancel();
}
