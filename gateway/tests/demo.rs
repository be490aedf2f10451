//! `goniec demo`, as a newcomer runs it: the real binary with its built-in
//! simulators delivers on every channel (SMS over SMPP, e-mail over SMTP, RCS with
//! its events and its SMS fallback).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

struct Demo {
    child: Child,
    api: String,
    key: String,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Demo {
    let key = "demo-test-key";
    let mut child = Command::new(env!("CARGO_BIN_EXE_goniec"))
        .args(["demo", "--listen", "127.0.0.1:0", "--api-key", key])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("goniec demo starts");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(api) = line.trim().strip_prefix("API:") {
                let _ = tx.send(api.trim().to_string());
            }
        }
    });
    let api = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the demo prints its API address");
    Demo {
        child,
        api,
        key: key.into(),
    }
}

impl Demo {
    async fn send(&self, c: &reqwest::Client, body: Value) -> String {
        let r = c
            .post(format!("{}/v1/messages", self.api))
            .bearer_auth(&self.key)
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
                .get(format!("{}/v1/messages/{id}", self.api))
                .bearer_auth(&self.key)
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
}
