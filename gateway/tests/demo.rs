//! `goniec demo`, as a newcomer runs it: the real binary with its built-in
//! simulators delivers on every channel (SMS over SMPP, e-mail over SMTP, RCS with
//! its events and its SMS fallback).

use std::time::{Duration, Instant};

use goniec_testkit::demo::DemoProcess;
use serde_json::{json, Value};

struct Demo(DemoProcess);

fn start() -> Demo {
    Demo(DemoProcess::start(std::path::Path::new(env!(
        "CARGO_BIN_EXE_goniec"
    ))))
}

impl Demo {
    async fn send(&self, c: &reqwest::Client, body: Value) -> String {
        let r = c
            .post(format!("{}/v1/messages", self.0.api))
            .bearer_auth(&self.0.key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let code = r.status();
        let v: Value = r.json().await.unwrap();
        assert_eq!(code, 202, "{v}");
        v["id"].as_str().unwrap().to_string()
    }

    async fn wait(&self, c: &reqwest::Client, id: &str, want: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let m: Value = c
                .get(format!("{}/v1/messages/{id}", self.0.api))
                .bearer_auth(&self.0.key)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if m["status"] == want {
                return m;
            }
            assert!(Instant::now() < deadline, "never {want}: {m}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn the_demo_delivers_on_every_channel() {
    let demo = start();
    let c = reqwest::Client::new();
    let sms = demo
        .send(
            &c,
            json!({"channel": "sms", "to": "+48501234567", "text": "Dzień dobry! Przypominamy o płatności."}),
        )
        .await;
    let mail = demo
        .send(
            &c,
            json!({"channel": "email", "to": "jan@example.com", "text": "Dzień dobry",
                   "email": {"subject": "Wyciąg", "html": "<p>Dzień dobry</p>"}}),
        )
        .await;
    let rcs = demo
        .send(
            &c,
            json!({"channel": "rcs", "to": "+48601234567", "text": "Dzień dobry",
                   "rcs": {"suggestions": [{"action": {"text": "Zapłać", "postbackData": "pay",
                           "openUrlAction": {"url": "https://pay.example/1"}}}]},
                   "fallback": ["sms"]}),
        )
        .await;
    let no_rcs = demo
        .send(
            &c,
            json!({"channel": "rcs", "to": "+48690123456", "text": "Dzień dobry",
                   "fallback": ["sms"]}),
        )
        .await;
    demo.wait(&c, &sms, "delivered").await;
    demo.wait(&c, &mail, "submitted").await;
    demo.wait(&c, &rcs, "read").await;
    let m = demo.wait(&c, &no_rcs, "delivered").await;
    assert!(
        m["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["reason"] == "rcs_unreachable"),
        "{m}"
    );
    // Stopped as Ctrl-C would stop it, the demo removes its temporary files.
    let dir = std::env::temp_dir().join(format!("goniec-demo-{}", demo.0.pid()));
    assert!(dir.is_dir(), "{} while running", dir.display());
    drop(demo);
    assert!(!dir.exists(), "{} left behind", dir.display());
}

/// `goniec demo --store redis-cluster://…` runs the demo on a Redis Cluster (three
/// masters here): an SMS goes to `delivered` with its receipt.
#[tokio::test]
async fn the_demo_runs_on_a_redis_cluster() {
    let Some(cluster) = goniec_testkit::RedisCluster::spawn() else {
        return;
    };
    let url = cluster.url();
    let demo = Demo(DemoProcess::start_with(
        std::path::Path::new(env!("CARGO_BIN_EXE_goniec")),
        &["--store", &url],
    ));
    let c = reqwest::Client::new();
    let id = demo
        .send(
            &c,
            json!({"channel": "sms", "to": "+48501234567", "text": "Dzień dobry"}),
        )
        .await;
    let m = demo.wait(&c, &id, "delivered").await;
    assert_eq!(m["to"], "+48501234567", "{m}");
}
