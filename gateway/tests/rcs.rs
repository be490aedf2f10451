//! RCS end to end on the real wire: HTTP API → Redis → RCS connector (OAuth2 JWT,
//! RBM REST shapes) → `rcs-sim`, whose signed DELIVERED/READ events come back on
//! `POST /v1/webhooks/rcs`; SMS fallback over SMPP to the SMSC simulator. Each test
//! spawns its own redis-server and simulators on free ports.

use std::time::Duration;

use goniec_connectors::rcs::events;
use goniec_sims::rbm::{RcsSim, RcsSimConfig};
use goniec_sims::smsc::{SimConfig, SmscSim};
use goniec_testkit::gateway::{config_toml_with, parse, TestGateway, ANTIFRAUD_OPEN_HOURS};
use goniec_testkit::RedisServer;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

const AGENT: &str = "goniec-test-agent";
const CLIENT_TOKEN: &str = "rcs-client-token-0123456789";

struct Rig {
    gw: TestGateway,
    /// `None` until the platform comes up (see [`Rig::start_platform_later`]).
    rcs: Option<RcsSim>,
    rcs_cfg: RcsSimConfig,
    rcs_addr: std::net::SocketAddr,
    smsc: SmscSim,
    stop: CancellationToken,
    _key: tempfile::NamedTempFile,
    _redis: RedisServer,
}

impl Rig {
    async fn start(sim: RcsSimConfig, tenant_extra: &str) -> Option<Rig> {
        Self::start_with(sim, tenant_extra, "[antifraud]\nenabled = false").await
    }

    async fn start_with(sim: RcsSimConfig, tenant_extra: &str, antifraud: &str) -> Option<Rig> {
        Self::start_full(sim, tenant_extra, antifraud, false).await
    }

    /// A gateway whose RCS platform is down: nothing listens on its address
    /// until [`Rig::start_platform`].
    async fn start_platform_later(sim: RcsSimConfig) -> Option<Rig> {
        Self::start_full(sim, "", "[antifraud]\nenabled = false", true).await
    }

    async fn start_platform(&mut self) {
        // The address was free when the rig started; while the platform was
        // down, the gateway's own connection attempts to it can land on it as
        // their local port (a loopback self-connect), holding it until they
        // time out. Wait that out rather than fail.
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        let rcs = loop {
            match RcsSim::start(self.rcs_addr, self.rcs_cfg.clone(), self.stop.clone()).await {
                Ok(r) => break r,
                Err(e)
                    if e.kind() == std::io::ErrorKind::AddrInUse
                        && std::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("the RCS platform cannot start on {}: {e}", self.rcs_addr),
            }
        };
        rcs.set_webhook(Some(self.gw.url("/v1/webhooks/rcs")));
        self.rcs = Some(rcs);
    }

    fn rcs(&self) -> &RcsSim {
        self.rcs.as_ref().expect("the platform is up")
    }

    async fn start_full(
        sim: RcsSimConfig,
        tenant_extra: &str,
        antifraud: &str,
        late: bool,
    ) -> Option<Rig> {
        let redis = RedisServer::spawn()?;
        let stop = CancellationToken::new();
        let key = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(key.path(), goniec_sims::rbm::DEMO_SERVICE_ACCOUNT).unwrap();
        let sim = RcsSimConfig {
            agent_id: AGENT.into(),
            client_token: CLIENT_TOKEN.into(),
            service_account_key: Some(key.path().to_path_buf()),
            ..sim
        };
        let rcs = if late {
            None
        } else {
            let s = RcsSim::start("127.0.0.1:0".parse().unwrap(), sim.clone(), stop.clone())
                .await
                .unwrap();
            Some(s)
        };
        // A free port for a platform that comes up later (bound, then released).
        let rcs_addr = match &rcs {
            Some(r) => r.addr(),
            None => std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap(),
        };
        let smsc_cfg = SimConfig {
            receipt_delay: Duration::from_millis(20),
            ..Default::default()
        };
        let smsc = SmscSim::start(
            "127.0.0.1:0".parse().unwrap(),
            smsc_cfg.clone(),
            stop.clone(),
        )
        .await
        .unwrap();
        let base = format!("http://{rcs_addr}");
        let extra = format!(
            r#"{tenant_extra}

[[connectors]]
name = "rbm"
kind = "rcs"
base_url = "{base}"
token_uri = "{base}/token"
agent_id = "{AGENT}"
service_account_key = "{key}"
client_token = "{CLIENT_TOKEN}"
timeout = "5s"

[[connectors]]
name = "smsc"
kind = "smpp"
port = {port}
system_id = "{sid}"
password = "{pw}"

[[routes]]
channel = "rcs"
connector = "rbm"

[[routes]]
channel = "sms"
connector = "smsc"
"#,
            key = key.path().display(),
            port = smsc.local_addr().port(),
            sid = smsc_cfg.system_id,
            pw = smsc_cfg.password,
        );
        // The tenant keys (`[tenants.rcs]`) must follow `[[tenants]]` "other", which
        // `config_toml_with` puts last, so they belong to it: tests post as `other`.
        let gw = TestGateway::start(parse(&config_toml_with(
            Some(&redis.url()),
            antifraud,
            &extra,
        )))
        .await;
        gw.wait_ready(200, Duration::from_secs(10)).await;
        if let Some(rcs) = &rcs {
            rcs.set_webhook(Some(gw.url("/v1/webhooks/rcs")));
        }
        Some(Rig {
            gw,
            rcs,
            rcs_cfg: sim,
            rcs_addr,
            smsc,
            stop,
            _key: key,
            _redis: redis,
        })
    }

    async fn post(&self, body: &Value) -> (u16, Value) {
        let r = self
            .gw
            .req(
                reqwest::Method::POST,
                "/v1/messages",
                goniec_testkit::gateway::OTHER_KEY,
            )
            .json(body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    async fn send(&self, body: &Value) -> String {
        let (code, r) = self.post(body).await;
        assert_eq!(code, 202, "{r}");
        r["id"].as_str().unwrap().to_string()
    }

    async fn message(&self, id: &str) -> Value {
        let r = self
            .gw
            .req(
                reqwest::Method::GET,
                &format!("/v1/messages/{id}"),
                goniec_testkit::gateway::OTHER_KEY,
            )
            .send()
            .await
            .unwrap();
        r.json().await.unwrap()
    }

    async fn wait_status(&self, id: &str, want: &str, within: Duration) -> Value {
        let deadline = std::time::Instant::now() + within;
        loop {
            let m = self.message(id).await;
            if m["status"] == want {
                return m;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{id} never became {want}: {m}"
            );
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }

    /// Post an event to the gateway's webhook as the platform would.
    async fn push(&self, event: &Value, token: &str) -> u16 {
        let data = serde_json::to_vec(event).unwrap();
        let body = events::push_body(&data, &ulid::Ulid::new().to_string());
        reqwest::Client::new()
            .post(self.gw.url("/v1/webhooks/rcs"))
            .header("X-Goog-Signature", events::sign(token, &data))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    async fn stop(self) {
        self.gw.stop().await;
        self.stop.cancel();
    }
}

fn rcs_msg(to: &str) -> Value {
    json!({
        "channel": "rcs",
        "to": to,
        "text": "Dzień dobry, zaległość 120,50 zł.",
        "rcs": {
            "suggestions": [
                {"action": {"text": "Zapłać teraz", "postbackData": "pay",
                            "openUrlAction": {"url": "https://pay.acme.example/abc"}}},
                {"reply": {"text": "Zadzwońcie", "postbackData": "callback"}}
            ]
        },
        "fallback": ["sms"]
    })
}

fn statuses(m: &Value) -> Vec<String> {
    m["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_capable_number_gets_delivered_then_read() {
    let sim = RcsSimConfig {
        delivered_after: Duration::from_millis(50),
        read_after: Some(Duration::from_millis(50)),
        ..Default::default()
    };
    let Some(rig) = Rig::start(sim, "").await else {
        return;
    };
    let id = rig.send(&rcs_msg("+48601000001")).await;
    let m = rig.wait_status(&id, "read", Duration::from_secs(15)).await;
    let st = statuses(&m);
    assert_eq!(
        st,
        ["accepted", "queued", "submitted", "delivered", "read"],
        "{m}"
    );
    let sent = rig.rcs().messages();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].message_id, id,
        "the messageId is ours (idempotent retries)"
    );
    let content = &sent[0].content;
    assert_eq!(content["text"], "Dzień dobry, zaległość 120,50 zł.");
    assert_eq!(
        content["suggestions"][0]["action"]["openUrlAction"]["url"],
        "https://pay.acme.example/abc"
    );
    assert_eq!(rig.smsc.stats().submits, 0, "no SMS");
    rig.stop().await;
}

/// DELIVERED can beat the gateway's own record of the submit: such an event waits
/// for it instead of being dropped.
#[tokio::test]
async fn an_event_before_the_submit_is_recorded_is_not_lost() {
    let sim = RcsSimConfig {
        delivered_after: Duration::ZERO,
        read_after: None,
        ..Default::default()
    };
    let Some(rig) = Rig::start(sim, "").await else {
        return;
    };
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(rig.send(&rcs_msg(&format!("+486010000{i:02}"))).await);
    }
    for id in &ids {
        rig.wait_status(id, "delivered", Duration::from_secs(15))
            .await;
    }
    rig.stop().await;
}

#[tokio::test]
async fn an_unreachable_number_falls_back_to_sms_with_both_attempts_in_its_events() {
    let sim = RcsSimConfig {
        unreachable_prefixes: vec!["+48602".into()],
        ..Default::default()
    };
    let Some(rig) = Rig::start(sim, "").await else {
        return;
    };
    let id = rig.send(&rcs_msg("+48602000001")).await;
    let m = rig
        .wait_status(&id, "delivered", Duration::from_secs(15))
        .await;
    let ev = m["events"].as_array().unwrap();
    assert!(
        ev.iter()
            .any(|e| e["reason"] == "rcs_unreachable" && e["status"] == "queued"),
        "the RCS attempt: {m}"
    );
    assert!(
        ev.iter().any(|e| e["status"] == "submitted"
            && e["detail"]
                .as_str()
                .is_some_and(|d| d.contains("connector=smsc"))),
        "the SMS attempt: {m}"
    );
    assert_eq!(rig.rcs().stats().unreachable, 1);
    assert_eq!(rig.smsc.stats().submits, 1, "one SMS");

    // Without `fallback`, it fails with the reason.
    let mut body = rcs_msg("+48602000002");
    body.as_object_mut().unwrap().remove("fallback");
    let id = rig.send(&body).await;
    let m = rig
        .wait_status(&id, "failed", Duration::from_secs(15))
        .await;
    let last = m["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["reason"], "rcs_unreachable", "{m}");
    rig.stop().await;
}

#[tokio::test]
async fn no_delivered_in_time_revokes_then_falls_back_never_both() {
    let sim = RcsSimConfig {
        silent_prefixes: vec!["+48603".into()],
        delivered_after: Duration::from_millis(50),
        ..Default::default()
    };
    let Some(rig) = Rig::start(sim, "[tenants.rcs]\nfallback_after = \"1s\"").await else {
        return;
    };
    let silent = rig
        .send(&json!({
            "channel": "rcs", "to": "+48603000001", "text": "Przypomnienie o płatności",
            "fallback": ["sms"], "fallback_text": "Przypomnienie: zapłać na pay.acme.example"
        }))
        .await;
    // A capable number that does deliver in time is never revoked.
    let fine = rig.send(&rcs_msg("+48601000002")).await;
    let m = rig
        .wait_status(&silent, "delivered", Duration::from_secs(20))
        .await;
    let ev = m["events"].as_array().unwrap();
    assert!(
        ev.iter()
            .any(|e| e["status"] == "queued" && e["reason"] == "rcs_fallback"),
        "{m}"
    );
    let st = statuses(&m);
    assert_eq!(
        st,
        [
            "accepted",
            "queued",
            "submitted",
            "queued",
            "submitted",
            "delivered"
        ],
        "RCS submitted, revoked, SMS submitted and delivered: {m}"
    );
    let revoked: Vec<_> = rig
        .rcs()
        .messages()
        .into_iter()
        .filter(|m| m.revoked)
        .collect();
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0].message_id, silent);
    assert_eq!(rig.smsc.stats().submits, 1);

    rig.wait_status(&fine, "read", Duration::from_secs(10))
        .await;
    // Past its deadline too: the check found it delivered and did nothing.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let m = rig.message(&fine).await;
    assert_eq!(m["status"], "read", "{m}");
    let s = rig.rcs().stats();
    assert_eq!((s.revoked, rig.smsc.stats().submits), (1, 1), "{s:?}");
    rig.stop().await;
}

/// The platform is unreachable for a while: messages wait (without using up their
/// attempts) and are all delivered once it is back.
#[tokio::test]
async fn a_platform_down_for_a_while_loses_nothing() {
    let Some(mut rig) = Rig::start_platform_later(RcsSimConfig::default()).await else {
        return;
    };
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(rig.send(&rcs_msg(&format!("+4860800000{i}"))).await);
    }
    // Longer than the test config's retries would take to use up every attempt.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for id in &ids {
        let m = rig.message(id).await;
        assert_eq!(m["status"], "queued", "{m}");
    }
    rig.start_platform().await;
    for id in &ids {
        rig.wait_status(id, "read", Duration::from_secs(20)).await;
    }
    assert_eq!(rig.rcs().stats().sent, 5);
    rig.stop().await;
}

/// The platform answers the revoke 200 while it is delivering the message: the
/// DELIVERED that follows within the grace period keeps the SMS from going out.
#[tokio::test]
async fn a_delivered_just_after_the_revoke_stops_the_sms() {
    let sim = RcsSimConfig {
        delivered_after: Duration::from_millis(1400),
        read_after: None,
        revoke_ineffective: true,
        ..Default::default()
    };
    let Some(rig) = Rig::start(sim, "[tenants.rcs]\nfallback_after = \"1s\"").await else {
        return;
    };
    let id = rig.send(&rcs_msg("+48609000001")).await;
    rig.wait_status(&id, "delivered", Duration::from_secs(10))
        .await;
    // Past the grace period: still delivered over RCS only.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let m = rig.message(&id).await;
    assert_eq!(m["status"], "delivered", "{m}");
    assert_eq!(
        statuses(&m),
        ["accepted", "queued", "submitted", "delivered"],
        "{m}"
    );
    assert_eq!(rig.rcs().stats().revoked, 1, "the revoke was tried");
    assert_eq!(rig.smsc.stats().submits, 0, "never both");
    rig.stop().await;
}

/// The revoke worked but its answer was lost: the retry hears 404 ("not found",
/// which also means "delivered"). No DELIVERED follows, so after a grace period
/// the message goes by SMS, once.
#[tokio::test]
async fn a_lost_revoke_answer_still_falls_back_once() {
    let sim = RcsSimConfig {
        silent_prefixes: vec!["+48607".into()],
        revoke_answer_lost: true,
        ..Default::default()
    };
    let Some(rig) = Rig::start(sim, "[tenants.rcs]\nfallback_after = \"1s\"").await else {
        return;
    };
    let id = rig.send(&rcs_msg("+48607000001")).await;
    let m = rig
        .wait_status(&id, "delivered", Duration::from_secs(20))
        .await;
    let st = statuses(&m);
    assert_eq!(
        st,
        [
            "accepted",
            "queued",
            "submitted",
            "queued",
            "submitted",
            "delivered"
        ],
        "{m}"
    );
    let s = rig.rcs().stats();
    assert_eq!((s.revoked, s.revoke_too_late), (1, 1), "{s:?}");
    assert_eq!(rig.smsc.stats().submits, 1);
    rig.stop().await;
}

#[tokio::test]
async fn a_bad_signature_is_refused_and_changes_nothing_and_replays_change_nothing() {
    let sim = RcsSimConfig {
        silent_prefixes: vec!["+48604".into()],
        ..Default::default()
    };
    // A loopback inbound URL needs the tenant's consent, or the config is refused.
    let Some(rig) = Rig::start(
        sim,
        "inbound_url = \"http://127.0.0.1:9/unused\"\nallow_private_callbacks = true",
    )
    .await
    else {
        return;
    };
    let id = rig.send(&rcs_msg("+48604000001")).await;
    rig.wait_status(&id, "submitted", Duration::from_secs(15))
        .await;
    let delivered = json!({
        "senderPhoneNumber": "+48604000001", "eventType": "DELIVERED",
        "eventId": "ev-1", "messageId": id, "sendTime": now_rfc3339(0),
        "agentId": AGENT,
    });
    // Wrong token, garbage signature, no signature: 401, still submitted.
    assert_eq!(
        rig.push(&delivered, "not-the-client-token-at-all").await,
        401
    );
    let data = serde_json::to_vec(&delivered).unwrap();
    let r = reqwest::Client::new()
        .post(rig.gw.url("/v1/webhooks/rcs"))
        .body(events::push_body(&data, "1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let m = rig.message(&id).await;
    assert_eq!(m["status"], "submitted", "{m}");

    // Garbage with a header: 400.
    let r = reqwest::Client::new()
        .post(rig.gw.url("/v1/webhooks/rcs"))
        .header("X-Goog-Signature", "AAAA")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // Signed: applied once; the same event again changes nothing.
    assert_eq!(rig.push(&delivered, CLIENT_TOKEN).await, 200);
    let m = rig
        .wait_status(&id, "delivered", Duration::from_secs(5))
        .await;
    assert_eq!(rig.push(&delivered, CLIENT_TOKEN).await, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rig.message(&id).await, m, "a replay changes nothing");
    rig.stop().await;
}

#[tokio::test]
async fn user_messages_are_forwarded_once_and_unsubscribe_opts_out() {
    let Some(hook) = Hook::start().await else {
        return;
    };
    let tenant = format!(
        "inbound_url = \"{}\"\nallow_private_callbacks = true",
        hook.url
    );
    let Some(rig) = Rig::start_with(RcsSimConfig::default(), &tenant, ANTIFRAUD_OPEN_HOURS).await
    else {
        return;
    };
    // Replies and opt-outs belong to the tenants that messaged the user.
    for to in ["+48605000001", "+48605000002"] {
        let id = rig.send(&rcs_msg(to)).await;
        rig.wait_status(&id, "read", Duration::from_secs(15)).await;
    }
    let stranger = json!({
        "senderPhoneNumber": "+48605000009", "messageId": "user-msg-0",
        "sendTime": now_rfc3339(0), "agentId": AGENT, "text": "Kto to?",
    });
    assert_eq!(rig.push(&stranger, CLIENT_TOKEN).await, 200);
    let reply = json!({
        "senderPhoneNumber": "+48605000001", "messageId": "user-msg-1",
        "sendTime": now_rfc3339(0), "agentId": AGENT,
        "suggestionResponse": {"postbackData": "pay", "text": "Zapłać teraz", "type": "ACTION"},
    });
    assert_eq!(rig.push(&reply, CLIENT_TOKEN).await, 200);
    assert_eq!(rig.push(&reply, CLIENT_TOKEN).await, 200, "a replay");
    let got = hook.wait(1, Duration::from_secs(10)).await;
    assert_eq!(got[0]["type"], "inbound");
    assert_eq!(got[0]["channel"], "rcs");
    assert_eq!(got[0]["from"], "+48605000001");
    assert_eq!(got[0]["postback"], "pay");
    assert_eq!(got[0]["text"], "Zapłać teraz");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        hook.received().len(),
        1,
        "forwarded once, and nothing from a number the tenant never messaged"
    );

    let unsub = json!({
        "senderPhoneNumber": "+48605000002", "eventType": "UNSUBSCRIBE",
        "eventId": "ev-u", "sendTime": now_rfc3339(-60), "agentId": AGENT,
    });
    assert_eq!(rig.push(&unsub, CLIENT_TOKEN).await, 200);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (code, r) = rig.post(&rcs_msg("+48605000002")).await;
        if code == 422 {
            // (Earlier tries may have gone through: then it is a duplicate too.)
            let reasons = r["reasons"].as_array().unwrap();
            assert!(reasons.contains(&json!("opted_out")), "{r}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never opted out: {r}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The user opts back in (through the tenant). A replay of that UNSUBSCRIBE,
    // correctly signed but older than the opt-in, must not undo it; neither may
    // one dated years ago (refused as stale), and one from the future is refused.
    let r = rig
        .gw
        .req(
            reqwest::Method::DELETE,
            "/v1/opt-outs/+48605000002",
            goniec_testkit::gateway::OTHER_KEY,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(rig.push(&unsub, CLIENT_TOKEN).await, 200, "acknowledged");
    let ancient = json!({
        "senderPhoneNumber": "+48605000002", "eventType": "UNSUBSCRIBE",
        "eventId": "ev-2020", "sendTime": "2020-01-15T10:00:00.000Z", "agentId": AGENT,
    });
    assert_eq!(rig.push(&ancient, CLIENT_TOKEN).await, 200, "acknowledged");
    let future = json!({
        "senderPhoneNumber": "+48605000002", "eventType": "UNSUBSCRIBE",
        "eventId": "ev-future", "sendTime": now_rfc3339(3600), "agentId": AGENT,
    });
    assert_eq!(rig.push(&future, CLIENT_TOKEN).await, 400);
    let mut msg = rcs_msg("+48605000002");
    msg["text"] = json!("Po ponownej zgodzie");
    let (code, r) = rig.post(&msg).await;
    assert_eq!(code, 202, "still opted in: {r}");
    rig.stop().await;
}

/// An RFC 3339 time `offset_s` seconds from now (events carry the platform's time).
fn now_rfc3339(offset_s: i64) -> String {
    jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(offset_s))
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn an_expired_token_is_refreshed_once_under_concurrent_sends() {
    let sim = RcsSimConfig {
        token_ttl: Duration::from_secs(2),
        ..Default::default()
    };
    let Some(rig) = Rig::start(sim, "").await else {
        return;
    };
    let mut ids = Vec::new();
    for round in 0..2u64 {
        let mut set = tokio::task::JoinSet::new();
        for i in 0..40 {
            let req = rig
                .gw
                .req(
                    reqwest::Method::POST,
                    "/v1/messages",
                    goniec_testkit::gateway::OTHER_KEY,
                )
                .json(&rcs_msg(&format!("+4860600{round}{i:03}")));
            set.spawn(async move {
                let r: Value = req.send().await.unwrap().json().await.unwrap();
                r["id"].as_str().expect("accepted").to_string()
            });
        }
        ids.extend(set.join_all().await);
        for id in &ids {
            rig.wait_status(id, "read", Duration::from_secs(15)).await;
        }
        let s = rig.rcs().stats();
        assert_eq!(s.tokens_issued, round + 1, "{s:?}");
        if round == 0 {
            // Past the token's life.
            tokio::time::sleep(Duration::from_millis(2100)).await;
        }
    }
    assert_eq!(rig.rcs().stats().unauthorized, 0);
    rig.stop().await;
}

/// A tenant's inbound endpoint: collects what the gateway posts.
struct Hook {
    url: String,
    got: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
}

impl Hook {
    async fn start() -> Option<Hook> {
        use axum::routing::post;
        let got: std::sync::Arc<std::sync::Mutex<Vec<Value>>> = Default::default();
        let got2 = got.clone();
        let app = axum::Router::new().route(
            "/inbound",
            post(move |body: axum::body::Bytes| {
                let got = got2.clone();
                async move {
                    if let Ok(v) = serde_json::from_slice(&body) {
                        got.lock().unwrap().push(v);
                    }
                    "ok"
                }
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.ok()?;
        let url = format!("http://{}/inbound", l.local_addr().ok()?);
        tokio::spawn(async move { axum::serve(l, app).await });
        Some(Hook { url, got })
    }

    fn received(&self) -> Vec<Value> {
        self.got.lock().unwrap().clone()
    }

    async fn wait(&self, n: usize, within: Duration) -> Vec<Value> {
        let deadline = std::time::Instant::now() + within;
        loop {
            let v = self.received();
            if v.len() >= n {
                return v;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "only {} posts",
                v.len()
            );
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }
}
