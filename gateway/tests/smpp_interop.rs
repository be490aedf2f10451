//! Interop with an SMPP implementation we did not write: node-smpp (the npm
//! package `smpp`) as the SMSC, from `tests/interop/smsc.js`. The gateway binds to
//! it, sends GSM-7, Polish UCS-2 and a 3-part concatenated message, and gets each
//! to `delivered` through node-smpp's receipts. The assertions are on what
//! node-smpp decoded, not on what we think we sent.
//!
//! Needs `node` and `npm ci --prefix tests/interop` (which `tests/run` does);
//! without them the test fails with the install line (see `goniec_testkit::require`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use goniec_testkit::gateway::{config_toml, metric_sum, parse, TestGateway};
use goniec_testkit::peer::Peer;
use goniec_testkit::{require, runs, RedisServer};
use serde_json::{json, Value};

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/interop")
}

/// `tests/interop/smsc.js` running under node, stopped (by PID) on drop.
struct NodeSmsc(Peer);

impl NodeSmsc {
    fn spawn() -> NodeSmsc {
        let mut cmd = Command::new("node");
        cmd.arg("smsc.js").current_dir(interop_dir());
        NodeSmsc(Peer::spawn(cmd, "smsc.js"))
    }

    /// The events named `name` so far.
    fn events(&self, name: &str) -> Vec<Value> {
        let all = self.0.events();
        all.into_iter().filter(|e| e["event"] == name).collect()
    }

    /// Wait until there are at least `n` events named `name`; return them.
    async fn wait_events(&self, name: &str, n: usize, within: Duration) -> Vec<Value> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.events(name);
            if got.len() >= n {
                return got;
            }
            if Instant::now() > deadline {
                panic!("expected {n} `{name}` events from smsc.js, got {got:?}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    fn kill(&mut self) {
        self.0.kill();
    }
}

async fn send(gw: &TestGateway, to: &str, text: &str) -> Value {
    let (code, r) = gw
        .post(
            "/v1/messages",
            &json!({"channel": "sms", "to": to, "text": text}),
        )
        .await;
    assert_eq!(code, 202, "{r}");
    r
}

#[tokio::test]
async fn node_smpp_smsc_decodes_our_submits_and_its_receipts_deliver() {
    if !require(
        runs("node", &["--version"]),
        "node",
        "sudo apt-get install -y nodejs npm",
    ) || !require(
        interop_dir().join("node_modules/smpp").is_dir(),
        "node-smpp in tests/interop/node_modules",
        "tests/run installs it, or: npm ci --prefix tests/interop",
    ) {
        return;
    }
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    let mut smsc = NodeSmsc::spawn();
    let connectors = format!(
        r#"
[[connectors]]
name = "node"
kind = "smpp"
host = "127.0.0.1"
port = {port}
system_id = "goniec"
password = "secret"
binds = 2
window = 10
response_timeout = "5s"
concat = "udh8"

[[routes]]
channel = "sms"
connector = "node"
"#,
        port = smsc.0.port,
    );
    let gw = TestGateway::start(parse(&config_toml(Some(&redis.url()), &connectors))).await;
    gw.wait_ready(200, Duration::from_secs(15)).await;
    let binds = smsc.wait_events("bind", 2, Duration::from_secs(10)).await;
    for b in &binds {
        assert_eq!(
            (&b["system_id"], &b["interface_version"], &b["ok"]),
            (&json!("goniec"), &json!(0x34), &json!(true)),
            "{b}"
        );
    }

    // GSM-7 with the characters that differ from ASCII and the extension table.
    let gsm_text = "Zaleglosc 120,50 EUR (€) @ Bank_1; kod [A-7] {x} ~^|\\ £$¥ èéÅΔ!";
    let gsm = send(&gw, "+48501234567", gsm_text).await;
    assert_eq!(
        (gsm["encoding"].as_str(), gsm["segments"].as_u64()),
        (Some("gsm7"), Some(1)),
        "{gsm}"
    );
    let ucs2_text = "Zażółć gęślą jaźń. Dzień dobry, zaległość 120,50 zł.";
    let ucs2 = send(&gw, "+48501234568", ucs2_text).await;
    assert_eq!(
        (ucs2["encoding"].as_str(), ucs2["segments"].as_u64()),
        (Some("ucs2"), Some(1)),
        "{ucs2}"
    );
    // 400 GSM-7 characters (401 septets): 3 parts of at most 153 septets. The `€`
    // (two septets) would straddle septets 153 and 154, so part 1 stops before it.
    let sentence = "Przypominamy o zaleglej platnosci za fakture 2026/11/118. ";
    let mut long: String = sentence.chars().cycle().take(152).collect();
    long.push('€');
    long.extend(sentence.chars().cycle().take(247));
    assert_eq!(long.chars().count(), 400);
    let multi = send(&gw, "+48501234569", &long).await;
    assert_eq!(
        (multi["encoding"].as_str(), multi["segments"].as_u64()),
        (Some("gsm7"), Some(3)),
        "{multi}"
    );

    for r in [&gsm, &ucs2, &multi] {
        let id = r["id"].as_str().unwrap();
        let m = gw
            .wait_status(id, Duration::from_secs(20), |s| s == "delivered")
            .await;
        let submitted = m["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["status"] == "submitted")
            .cloned()
            .unwrap_or_else(|| panic!("no submitted event: {m}"));
        assert!(
            submitted["detail"]
                .as_str()
                .is_some_and(|d| d.contains("connector=node")),
            "{submitted}"
        );
    }

    // What node-smpp decoded from our submit_sm, per destination.
    let submits = smsc
        .wait_events("submit_sm", 5, Duration::from_secs(5))
        .await;
    assert_eq!(submits.len(), 5, "{submits:?}");
    let mut by_dest: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for s in &submits {
        assert_eq!(s["registered_delivery"], 1, "{s}");
        assert_eq!(s["dest_addr_ton"], 1, "{s}");
        assert_eq!(s["sar"], Value::Null, "{s}");
        assert_eq!(s["payload"], Value::Null, "{s}");
        let dest = s["destination_addr"].as_str().unwrap().to_string();
        by_dest.entry(dest).or_default().push(s.clone());
    }

    let single = |dest: &str| {
        let v = &by_dest[dest];
        assert_eq!(v.len(), 1, "{v:?}");
        v[0].clone()
    };
    let s = single("48501234567");
    assert_eq!(
        (&s["data_coding"], &s["esm_class"], &s["udh"]),
        (&json!(0), &json!(0), &Value::Null),
        "{s}"
    );
    assert_eq!(
        s["text"], gsm_text,
        "node-smpp decoded our GSM-7 differently"
    );
    let s = single("48501234568");
    assert_eq!(
        (&s["data_coding"], &s["esm_class"], &s["udh"]),
        (&json!(8), &json!(0), &Value::Null),
        "{s}"
    );
    assert_eq!(
        s["text"], ucs2_text,
        "node-smpp decoded our UCS-2 differently"
    );

    let mut parts = by_dest["48501234569"].clone();
    assert_eq!(parts.len(), 3, "{parts:?}");
    parts.sort_by_key(|p| p["udh"]["seq"].as_u64());
    let reference = parts[0]["udh"]["ref"].clone();
    for (i, p) in parts.iter().enumerate() {
        assert_eq!(p["esm_class"], 0x40, "UDHI set: {p}");
        assert_eq!(p["data_coding"], 0, "{p}");
        assert_eq!(
            p["udh"],
            json!({"iei": 0, "ref": reference, "total": 3, "seq": i + 1}),
            "{p}"
        );
    }
    let texts: Vec<&str> = parts.iter().map(|p| p["text"].as_str().unwrap()).collect();
    assert_eq!(texts.concat(), long, "parts joined by node-smpp");
    assert_eq!(texts[0].chars().count(), 152, "`€` is not split: {texts:?}");

    // Every receipt node-smpp sent was acknowledged with ESME_ROK, for an id it
    // gave out.
    let acks = smsc
        .wait_events("deliver_sm_resp", 5, Duration::from_secs(5))
        .await;
    let mut acked: Vec<&str> = acks.iter().map(|a| a["id"].as_str().unwrap()).collect();
    let mut given: Vec<&str> = submits.iter().map(|s| s["id"].as_str().unwrap()).collect();
    acked.sort_unstable();
    given.sort_unstable();
    assert_eq!(acked, given);
    for a in &acks {
        assert_eq!(a["command_status"], 0, "{a}");
    }
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
        0.0
    );

    gw.stop().await;
    smsc.kill();
}
