//! `kill -9` of the gateway process mid-flight loses no accepted message: after a
//! restart every message reaches a final state, and messages sent twice to the
//! connector are counted and bounded by the number that were in flight.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use goniec_gateway::store::redis::RedisStore;
use goniec_store::keys::Keys;
use goniec_store::Lane;
use goniec_testkit::gateway::{config_toml, metric_sum, ACME_KEY};
use goniec_testkit::{free_port, RedisCluster, RedisServer};

/// The SMS lane's stream of tenant `acme` in every partition (the test configs keep the default count).
fn sms_queues(prefix: &str) -> Vec<String> {
    let keys = Keys::new(prefix);
    let parts = goniec_config::Store::default().partitions;
    (0..parts)
        .map(|p| keys.queue(p, Lane::Channel(goniec_config::Channel::Sms), "acme"))
        .collect()
}

/// Entries left in the SMS lane, across partitions (one command per key: the
/// probe may be a cluster connection).
async fn sms_queue_len<C: redis::aio::ConnectionLike>(c: &mut C, prefix: &str) -> i64 {
    let mut total = 0;
    for q in sms_queues(prefix) {
        let n: i64 = redis::cmd("XLEN").arg(q).query_async(c).await.unwrap();
        total += n;
    }
    total
}

use serde_json::{json, Value};
const CONCURRENCY: usize = 64;
/// Leases one instance can hold at a kill: its `CONCURRENCY` working, plus
/// what one claim may bring beyond the permits it had (the store reads every
/// stream alike, so a claim for fewer entries than there are streams, 16
/// partitions here, may return up to one per stream; they wait in the process
/// for their permits).
const HELD_MAX: usize = CONCURRENCY + 16 - 1;
const TOTAL: usize = 5_000;

struct Gateway(Child);

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A store on the same Redis or cluster as the gateways, to look at keys.
fn probe(url: &str, prefix: &str) -> RedisStore {
    let mut cfg = goniec_config::Store {
        url: url.to_string(),
        prefix: prefix.to_string(),
        ..Default::default()
    };
    if let Some(nodes) = goniec_config::Store::cluster_nodes(url) {
        cfg.backend = goniec_config::StoreBackend::RedisCluster;
        cfg.nodes = nodes;
    }
    RedisStore::new(&cfg).unwrap()
}

fn spawn(config: &std::path::Path, log: &std::path::Path) -> Gateway {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_goniec"))
        .args(["serve", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn goniec");
    Gateway(child)
}

/// The store prefix a test config sets.
fn store_prefix(cfg: &str) -> String {
    cfg.lines()
        .find_map(|l| l.strip_prefix("prefix = \""))
        .unwrap()
        .trim_end_matches('"')
        .to_string()
}

/// Accept `n` SMS (batches of 500) to numbers `{to}000000…`; their ids.
async fn send_batches(http: &reqwest::Client, base: &str, n: usize, to: &str) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    for b in 0..n / 500 {
        let messages: Vec<Value> = (0..500)
            .map(|i| json!({"channel":"sms","to":format!("{to}{:06}", b * 500 + i),"text":"Przypomnienie o płatności"}))
            .collect();
        let r = http
            .post(format!("{base}/v1/messages/batch"))
            .bearer_auth(ACME_KEY)
            .json(&json!({"messages": messages}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        let body: Value = r.json().await.unwrap();
        ids.extend(
            body["results"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].as_str().unwrap().to_string()),
        );
    }
    ids
}

async fn wait_ready(http: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await {
            if r.status() == 200 {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("gateway at {base} did not become ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_flight_loses_nothing_and_bounds_duplicates() {
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("goniec-crash-{}", ulid::Ulid::new()));
    std::fs::create_dir_all(&dir).unwrap();
    let sent_log = dir.join("sent.txt");
    let port = free_port();
    let extra = format!(
        r#"
[[connectors]]
name = "slow"
kind = "stub"
channels = ["sms"]
latency = "50ms"
record_to = "{}"

[[routes]]
channel = "sms"
connector = "slow"
"#,
        sent_log.display()
    );
    let cfg = config_toml(Some(&redis.url()), &extra)
        .replace(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:{port}\""),
        )
        .replace("concurrency = 32", &format!("concurrency = {CONCURRENCY}"));
    let prefix = store_prefix(&cfg);
    let cfg_path = dir.join("goniec.toml");
    std::fs::write(&cfg_path, cfg).unwrap();
    let log = dir.join("gateway.log");
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder().no_proxy().build().unwrap();

    let mut gw = spawn(&cfg_path, &log);
    wait_ready(&http, &base).await;
    let ids = send_batches(&http, &base, TOTAL, "+48501").await;
    assert_eq!(ids.len(), TOTAL);
    // Let the workers get going (64 in flight at 50 ms each), then kill -9.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    gw.0.kill().unwrap(); // SIGKILL: no drain, no cleanup
    gw.0.wait().unwrap();
    let sent_before = std::fs::read_to_string(&sent_log)
        .unwrap_or_default()
        .lines()
        .count();
    assert!(
        sent_before > 0 && sent_before < TOTAL,
        "kill must land mid-flight (sent {sent_before})"
    );

    let _gw2 = spawn(&cfg_path, &log);
    wait_ready(&http, &base).await;

    // Every accepted message reaches a final state.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    // Every accepted message reaches the carrier and then a final state. The one
    // exception is a message whose submit was recorded but whose receipt was still
    // inside the killed process: the stub, unlike an SMSC (which re-sends a
    // deliver_sm until it is acknowledged), does not redeliver it. Those stay
    // `submitted` and are bounded by what was in flight.
    let read = |c: &mut redis::aio::MultiplexedConnection| {
        let mut p = redis::pipe();
        for id in &ids {
            p.cmd("HGET").arg(Keys::new(&prefix).record(id)).arg("s");
        }
        let mut c = c.clone();
        async move { p.query_async::<Vec<Option<String>>>(&mut c).await.unwrap() }
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let st = read(&mut c).await;
        let waiting = st
            .iter()
            .filter(|s| !matches!(s.as_deref(), Some("delivered" | "submitted")))
            .count();
        if waiting == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await; // the last receipts
    let statuses = read(&mut c).await;
    let mut by_status: HashMap<String, usize> = HashMap::new();
    let xlen = sms_queue_len(&mut c, &prefix).await;
    let mut pending = Vec::new();
    for queue in sms_queues(&prefix) {
        let p: redis::Value = redis::cmd("XPENDING")
            .arg(&queue)
            .arg("workers")
            .query_async(&mut c)
            .await
            .unwrap();
        pending.push(p);
    }
    eprintln!("queue after recovery: xlen {xlen}, pending {pending:?}");
    for s in &statuses {
        *by_status
            .entry(s.clone().unwrap_or_else(|| "MISSING".into()))
            .or_default() += 1;
    }
    let delivered = by_status.get("delivered").copied().unwrap_or(0);
    let receipt_lost = by_status.get("submitted").copied().unwrap_or(0);
    assert_eq!(
        delivered + receipt_lost,
        TOTAL,
        "statuses after restart: {by_status:?} (log: {})",
        log.display()
    );
    assert!(
        receipt_lost <= CONCURRENCY,
        "{receipt_lost} receipts lost > {CONCURRENCY} in flight"
    );
    assert_eq!(xlen, 0, "queue drained");

    // Duplicates: sent more than once, bounded by what was in flight at the kill.
    let text = std::fs::read_to_string(&sent_log).unwrap();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for l in text.lines().filter(|l| l.len() == 26) {
        *counts.entry(l).or_default() += 1;
    }
    assert_eq!(counts.len(), TOTAL, "every message reached the connector");
    let duplicates: usize = counts.values().map(|n| n - 1).sum();
    let m = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let reclaimed = metric_sum(&m, "goniec_queue_reclaimed_total", &[("lane", "sms")]) as usize;
    eprintln!("crash test: sent before kill {sent_before}, duplicates {duplicates}, reclaimed {reclaimed}, delivered {delivered}, receipts lost with the process {receipt_lost}");
    assert!(
        duplicates <= HELD_MAX,
        "{duplicates} duplicates > {HELD_MAX} held"
    );
    assert!(
        reclaimed >= duplicates,
        "every duplicate came from a counted reclaim ({reclaimed} < {duplicates})"
    );
    assert!(
        reclaimed <= HELD_MAX,
        "only leases held at the kill are reclaimed ({reclaimed} > {HELD_MAX})"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two instances share a lane; one is killed with `kill -9` and never comes
/// back. The survivor takes its entries over once the dead one's heartbeat
/// lapses (`takeover_after`, 2 s here), long before `claim_idle` (60 s), and
/// every message leaves the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_instance_is_taken_over_within_seconds_by_the_other() {
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    take_over_a_killed_instance(&redis.url()).await;
}

/// The same on a Redis Cluster of three masters: two gateways share the work
/// and the survivor finishes the killed one's messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_a_killed_instance_is_taken_over_within_seconds_by_the_other() {
    let Some(cluster) = RedisCluster::spawn() else {
        return;
    };
    take_over_a_killed_instance(&cluster.url()).await;
}

async fn take_over_a_killed_instance(store_url: &str) {
    const N: usize = 3_000;
    let dir = std::env::temp_dir().join(format!("goniec-takeover-{}", ulid::Ulid::new()));
    std::fs::create_dir_all(&dir).unwrap();
    let extra = r#"
[[connectors]]
name = "slow"
kind = "stub"
channels = ["sms"]
latency = "50ms"

[[routes]]
channel = "sms"
connector = "slow"
"#;
    let (pa, pb) = (free_port(), free_port());
    let base_cfg = config_toml(Some(store_url), extra).replace(
        "concurrency = 32",
        "concurrency = 32\ntakeover_after = \"2s\"",
    );
    assert!(
        base_cfg.contains("takeover_after"),
        "the test config sets it"
    );
    let prefix = store_prefix(&base_cfg);
    let cfg = |port: u16, name: &str| {
        let path = dir.join(name);
        let text = base_cfg.replace(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:{port}\""),
        );
        std::fs::write(&path, text).unwrap();
        path
    };
    let (ca, cb) = (cfg(pa, "a.toml"), cfg(pb, "b.toml"));
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let (base_a, base_b) = (
        format!("http://127.0.0.1:{pa}"),
        format!("http://127.0.0.1:{pb}"),
    );
    let mut a = spawn(&ca, &dir.join("a.log"));
    let _b = spawn(&cb, &dir.join("b.log"));
    wait_ready(&http, &base_a).await;
    wait_ready(&http, &base_b).await;
    send_batches(&http, &base_a, N, "+48502").await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    a.0.kill().unwrap();
    a.0.wait().unwrap();
    let killed_at = Instant::now();

    let mut c = probe(store_url, &prefix).raw_connection().await.unwrap();
    // Done when nothing is left in the streams (every entry acknowledged).
    let deadline = killed_at + Duration::from_secs(30);
    let mut drained_after = None;
    while Instant::now() < deadline {
        if sms_queue_len(&mut c, &prefix).await == 0 {
            drained_after = Some(killed_at.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let m = http
        .get(format!("{base_b}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let taken = metric_sum(&m, "goniec_queue_reclaimed_total", &[("lane", "sms")]);
    let log_b = std::fs::read_to_string(dir.join("b.log")).unwrap_or_default();
    let took_over = log_b.contains("heartbeat lapsed");
    eprintln!("takeover test: drained {drained_after:?} after the kill; survivor took over {taken} entries");
    let drained = drained_after.unwrap_or_else(|| {
        panic!("the queue was not drained within 30 s of the kill (claim_idle is 60 s); b.log:\n{log_b}")
    });
    assert!(
        taken > 0.0 && took_over,
        "the survivor took over the dead one's entries"
    );
    assert!(
        drained < Duration::from_secs(15),
        "taken over and drained {drained:?} after the kill"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `kill -9` mid-campaign and a restart: the campaign finishes where it was,
/// and no recipient gets a step twice. Counted three ways: message records in
/// Redis (exactly one per recipient and step), the connector's own record of
/// submits (every message reached it), and the campaign's report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_campaign_sends_each_step_once() {
    const RECIPIENTS: usize = 2_000;
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("goniec-camp-crash-{}", ulid::Ulid::new()));
    std::fs::create_dir_all(&dir).unwrap();
    let sent_log = dir.join("sent.txt");
    let port = free_port();
    let extra = format!(
        r#"
[[connectors]]
name = "ok"
kind = "stub"
channels = ["sms"]
latency = "5ms"
record_to = "{}"

[[routes]]
channel = "sms"
connector = "ok"
"#,
        sent_log.display()
    );
    let cfg = config_toml(Some(&redis.url()), &extra).replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"127.0.0.1:{port}\""),
    );
    let prefix = store_prefix(&cfg);
    let cfg_path = dir.join("goniec.toml");
    std::fs::write(&cfg_path, cfg).unwrap();
    let log = dir.join("gateway.log");
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut gw = spawn(&cfg_path, &log);
    wait_ready(&http, &base).await;
    let post = |path: &str, body: Value| {
        http.post(format!("{base}{path}"))
            .bearer_auth(ACME_KEY)
            .json(&body)
            .send()
    };
    let r = post(
        "/v1/templates",
        json!({"id": "r", "channel": "sms", "text": "Przypomnienie {{n}}", "vars": {"n": {}}}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    let recipients: Vec<Value> = (0..RECIPIENTS)
        .map(|i| json!({"to": format!("+48502{i:06}"), "client_ref": format!("c{i}"), "vars": {"n": i.to_string()}}))
        .collect();
    let r = post(
        "/v1/campaigns",
        json!({"steps": [{"channel": "sms", "template_id": "r"},
                         {"channel": "sms", "template_id": "r", "after": "1s"}],
               "speed": "1000/s", "recipients": recipients, "start": true}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let progress = |http: &reqwest::Client| {
        http.get(format!("{base}/v1/campaigns/{id}"))
            .bearer_auth(ACME_KEY)
            .send()
    };
    // Kill it mid-run.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let p: Value = progress(&http).await.unwrap().json().await.unwrap();
        let n = p["total"]["accepted"].as_i64().unwrap_or(0);
        if n > 600 {
            assert!(n < 2 * RECIPIENTS as i64, "kill must land mid-run: {p}");
            break;
        }
        assert!(Instant::now() < deadline, "the campaign did not start: {p}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gw.0.kill().unwrap();
    gw.0.wait().unwrap();

    let _gw2 = spawn(&cfg_path, &log);
    wait_ready(&http, &base).await;
    // A batch whose idempotency key the killed process had reserved is taken
    // over once that process's heartbeat lapses (`takeover_after`, 5 s), not
    // after the reservation's own 60 s.
    let restarted = Instant::now();
    let deadline = restarted + Duration::from_secs(40);
    let p = loop {
        let p: Value = progress(&http).await.unwrap().json().await.unwrap();
        if p["state"] == "completed" {
            break p;
        }
        assert!(
            Instant::now() < deadline,
            "the campaign did not finish: {p}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(p["steps"]["s0:sms"]["accepted"], RECIPIENTS, "{p}");
    assert_eq!(p["steps"]["s1:sms"]["accepted"], RECIPIENTS, "{p}");

    // Exactly one message per recipient and step in the store.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let mut per: HashMap<(String, u64), usize> = HashMap::new();
    let mut ids = std::collections::HashSet::new();
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}:*:m:*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut c)
            .await
            .unwrap();
        for k in keys {
            let d: String = redis::cmd("HGET")
                .arg(&k)
                .arg("d")
                .query_async(&mut c)
                .await
                .unwrap();
            let d: Value = serde_json::from_str(&d).unwrap();
            let camp = &d["campaign"];
            assert_eq!(camp["id"], id.as_str());
            *per.entry((
                d["client_ref"].as_str().unwrap().to_string(),
                camp["step"].as_u64().unwrap(),
            ))
            .or_insert(0) += 1;
            ids.insert(d["id"].as_str().unwrap().to_string());
        }
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    assert_eq!(per.len(), 2 * RECIPIENTS, "every recipient got both steps");
    assert!(per.values().all(|&n| n == 1), "no step twice");
    // Every message reached the connector; resubmits after the kill are
    // bounded by what one instance holds.
    let sent = std::fs::read_to_string(&sent_log).unwrap();
    let submitted: Vec<&str> = sent.lines().collect();
    let distinct: std::collections::HashSet<&str> = submitted.iter().copied().collect();
    assert!(
        ids.iter().all(|i| distinct.contains(i.as_str())),
        "a message never reached the connector"
    );
    assert!(
        submitted.len() - distinct.len() <= HELD_MAX,
        "{} resubmits",
        submitted.len() - distinct.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
