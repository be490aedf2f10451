//! The RCS connector against the RBM simulator over real HTTP on loopback:
//! tokens, sends, capability cache, revoke, throttling and the signed webhook
//! events the simulator posts to a small receiver here.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use goniec_connectors::rcs::config::Config as RcsConfig;
use goniec_connectors::rcs::events::{self, Event};
use goniec_connectors::rcs::UNREACHABLE;
use goniec_connectors::{
    BuildContext, BuildError, Channel, Connector, ConnectorConfig, ConnectorKind, DeliveryError,
    Health, Outbound,
};
use goniec_sims::rbm::{self, RcsSim, RcsSimConfig};
use serde_json::json;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

const AGENT: &str = "goniec-test-agent";
const CLIENT_TOKEN: &str = "test-client-token-0123456789";
const WAIT: Duration = Duration::from_secs(10);

/// Events received by the webhook, with whether their signature verified.
#[derive(Clone, Default)]
struct Hook {
    events: Arc<Mutex<Vec<(Event, bool)>>>,
    arrived: Arc<Notify>,
}

impl Hook {
    async fn start(stop: &CancellationToken) -> (Hook, String) {
        async fn receive(State(hook): State<Hook>, headers: HeaderMap, body: Bytes) -> StatusCode {
            let Ok((data, event)) = events::parse_push(&body) else {
                return StatusCode::BAD_REQUEST;
            };
            let signature = headers
                .get(events::SIGNATURE_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let valid = events::verify(CLIENT_TOKEN, &data, signature);
            hook.events.lock().unwrap().push((event, valid));
            hook.arrived.notify_waiters();
            StatusCode::OK
        }
        let hook = Hook::default();
        let app = Router::new()
            .route("/rcs", post(receive))
            .with_state(hook.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/rcs", listener.local_addr().unwrap());
        let stop = stop.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await
                .unwrap();
        });
        (hook, url)
    }

    fn events(&self) -> Vec<(Event, bool)> {
        self.events.lock().unwrap().clone()
    }

    /// Waits until at least `n` events arrived.
    async fn wait_for(&self, n: usize) -> Vec<(Event, bool)> {
        tokio::time::timeout(WAIT, async {
            loop {
                let arrived = self.arrived.notified();
                let events = self.events();
                if events.len() >= n {
                    return events;
                }
                arrived.await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("fewer than {n} events arrived: {:?}", self.events()))
    }
}

struct Setup {
    sim: RcsSim,
    hook: Hook,
    key: PathBuf,
    _dir: tempfile::TempDir,
    stop: CancellationToken,
}

impl Drop for Setup {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A simulator trusting the demo key, posting events to a fresh webhook.
async fn setup(cfg: RcsSimConfig) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let key = rbm::write_demo_service_account(dir.path()).unwrap();
    let stop = CancellationToken::new();
    let (hook, url) = Hook::start(&stop).await;
    let cfg = RcsSimConfig {
        agent_id: AGENT.into(),
        client_token: CLIENT_TOKEN.into(),
        webhook_url: Some(url),
        service_account_key: Some(key.clone()),
        ..cfg
    };
    let sim = RcsSim::start("127.0.0.1:0".parse().unwrap(), cfg, stop.clone())
        .await
        .unwrap();
    Setup {
        sim,
        hook,
        key,
        _dir: dir,
        stop,
    }
}

fn quick() -> RcsSimConfig {
    RcsSimConfig {
        delivered_after: Duration::from_millis(20),
        read_after: None,
        ..RcsSimConfig::default()
    }
}

fn rcs_config(s: &Setup, check_capabilities: bool) -> RcsConfig {
    RcsConfig {
        base_url: s.sim.base_url(),
        agent_id: AGENT.into(),
        service_account_key: s.key.clone(),
        token_uri: Some(s.sim.token_uri()),
        client_token: CLIENT_TOKEN.into(),
        check_capabilities,
        timeout: Duration::from_secs(5),
        ..RcsConfig::default()
    }
}

fn build(cfg: RcsConfig) -> Result<Arc<dyn Connector>, BuildError> {
    let (receipts, _) = mpsc::channel(16);
    let (inbound, _) = mpsc::channel(16);
    let cx = BuildContext {
        receipts,
        inbound,
        shutdown: CancellationToken::new(),
    };
    let section = ConnectorConfig {
        name: "rbm".into(),
        tps: None,
        kind: ConnectorKind::Rcs(cfg),
    };
    goniec_connectors::build(&section, cx)
}

fn connector(s: &Setup, check_capabilities: bool) -> Arc<dyn Connector> {
    build(rcs_config(s, check_capabilities)).unwrap()
}

fn message(id: &str, to: &str) -> Outbound {
    Outbound {
        message_id: id.into(),
        channel: Channel::Rcs,
        to: to.into(),
        from: None,
        text: Some("Dzień dobry, przypominamy o płatności.".into()),
        email: None,
        rcs: None,
        attempt: 0,
        valid_until: None,
    }
}

fn id() -> String {
    ulid::Ulid::new().to_string()
}

#[tokio::test]
async fn delivered_then_read_events_arrive_signed() {
    let s = setup(RcsSimConfig {
        read_after: Some(Duration::from_millis(20)),
        ..quick()
    })
    .await;
    let rbm = connector(&s, false);
    assert_eq!(rbm.channels(), &[Channel::Rcs]);
    let mut msg = message(&id(), "+48500100200");
    msg.valid_until = Some(SystemTime::now() + Duration::from_secs(3600));
    let submitted = rbm.submit(&msg).await.unwrap();
    assert_eq!(submitted.provider_id, msg.message_id);

    let events = s.hook.wait_for(2).await;
    assert!(events.iter().all(|(_, valid)| *valid), "{events:?}");
    match &events[0].0 {
        Event::Delivered {
            message_id, phone, ..
        } => {
            assert_eq!(message_id, &msg.message_id);
            assert_eq!(phone, "+48500100200");
        }
        other => panic!("expected DELIVERED first, got {other:?}"),
    }
    assert!(
        matches!(&events[1].0, Event::Read { message_id, .. } if message_id == &msg.message_id)
    );
    let receipt = events[0].0.receipt("rbm").unwrap();
    assert_eq!(receipt.provider_id, submitted.provider_id);

    let sent = s.sim.messages();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].content,
        json!({ "text": msg.text.clone().unwrap() })
    );
    assert!(sent[0]
        .expire_time
        .as_deref()
        .is_some_and(|t| t.ends_with('Z')));
    assert!(sent[0].delivered && !sent[0].revoked);
    assert_eq!(rbm.health(), Health::Up);
}

#[tokio::test]
async fn rich_cards_travel_as_content_messages() {
    let s = setup(quick()).await;
    let rbm = connector(&s, false);
    let mut msg = message(&id(), "+48500100201");
    msg.text = None;
    msg.rcs = Some(json!({
        "richCard": { "standaloneCard": { "cardOrientation": "VERTICAL", "cardContent": {
            "title": "Faktura 1/2026", "description": "Do zapłaty 120 zł",
            "suggestions": [ { "action": { "text": "Zapłać",
                "openUrlAction": { "url": "https://pay.example/abc" } } } ] } } },
        "suggestions": [ { "reply": { "text": "Już zapłaciłem" } } ]
    }));
    rbm.submit(&msg).await.unwrap();
    let content = &s.sim.messages()[0].content;
    assert_eq!(
        content["richCard"]["standaloneCard"]["cardContent"]["title"],
        "Faktura 1/2026"
    );
    assert_eq!(
        content["suggestions"][0]["reply"]["postbackData"],
        "Już zapłaciłem"
    );

    // Content RBM would refuse never leaves: a permanent failure naming the field.
    msg.message_id = id();
    msg.rcs = Some(
        json!({ "richCard": { "carouselCard": { "cardWidth": "SMALL", "cardContents": [] } } }),
    );
    let err = rbm.submit(&msg).await.unwrap_err();
    assert!(
        matches!(&err, DeliveryError::Permanent { code, reason }
            if code == "invalid_message" && reason.contains("rcs.richCard.carouselCard.cardContents")),
        "{err:?}"
    );
    assert_eq!(s.sim.stats().sent, 1);
}

#[tokio::test]
async fn unreachable_numbers_fail_permanently_and_are_remembered() {
    let s = setup(RcsSimConfig {
        unreachable_prefixes: vec!["+4860".into()],
        ..quick()
    })
    .await;
    let unreachable = |r: Result<_, DeliveryError>| matches!(r, Err(DeliveryError::Permanent { ref code, .. }) if code == UNREACHABLE);

    // Without capability checks: the send's 404 is remembered.
    let plain = connector(&s, false);
    assert!(unreachable(
        plain.submit(&message(&id(), "+48601000001")).await
    ));
    assert!(unreachable(
        plain.submit(&message(&id(), "+48601000001")).await
    ));
    let stats = s.sim.stats();
    assert_eq!((stats.unreachable, stats.capability_checks), (1, 0));

    // With them: one capability request, then the cache answers.
    let checking = connector(&s, true);
    assert!(unreachable(
        checking.submit(&message(&id(), "+48601000002")).await
    ));
    assert!(unreachable(
        checking.submit(&message(&id(), "+48601000002")).await
    ));
    let stats = s.sim.stats();
    assert_eq!((stats.unreachable, stats.capability_checks), (1, 1));

    // A capable number is checked once, then sent to directly.
    checking
        .submit(&message(&id(), "+48500100202"))
        .await
        .unwrap();
    checking
        .submit(&message(&id(), "+48500100202"))
        .await
        .unwrap();
    let stats = s.sim.stats();
    assert_eq!((stats.sent, stats.capability_checks), (2, 2));
}

#[tokio::test]
async fn same_message_id_twice_is_one_delivery() {
    let s = setup(quick()).await;
    let rbm = connector(&s, false);
    let msg = message(&id(), "+48500100203");
    let first = rbm.submit(&msg).await.unwrap();
    let again = rbm.submit(&msg).await.unwrap();
    assert_eq!(first, again);
    let stats = s.sim.stats();
    assert_eq!((stats.sent, stats.duplicates), (1, 1));
    s.hook.wait_for(1).await;
    // The simulator scheduled one delivery only; give a second one time to show.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(s.hook.events().len(), 1);
}

async fn submit_concurrently(rbm: &Arc<dyn Connector>, n: usize) {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let rbm = rbm.clone();
        tasks.spawn(async move {
            rbm.submit(&message(&id(), &format!("+48500300{i:03}")))
                .await
                .unwrap()
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
}

#[tokio::test]
async fn concurrent_senders_share_one_token_request() {
    let s = setup(RcsSimConfig {
        token_ttl: Duration::from_secs(1),
        delivered_after: Duration::from_secs(60),
        ..quick()
    })
    .await;
    let rbm = connector(&s, false);
    submit_concurrently(&rbm, 50).await;
    assert_eq!(s.sim.stats().tokens_issued, 1);
    // Past the token's lifetime: the next wave needs a new one, asked for once.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    submit_concurrently(&rbm, 50).await;
    let stats = s.sim.stats();
    assert_eq!(stats.tokens_issued, 2);
    assert_eq!((stats.sent, stats.unauthorized), (100, 0));
}

#[tokio::test]
async fn a_rejected_token_is_replaced_after_401() {
    let s = setup(quick()).await;
    let rbm = connector(&s, false);
    rbm.submit(&message(&id(), "+48500100204")).await.unwrap();
    s.sim.revoke_tokens();
    let err = rbm
        .submit(&message(&id(), "+48500100204"))
        .await
        .unwrap_err();
    assert!(matches!(err, DeliveryError::Transient { .. }), "{err:?}");
    rbm.submit(&message(&id(), "+48500100204")).await.unwrap();
    let stats = s.sim.stats();
    assert_eq!(
        (stats.unauthorized, stats.tokens_issued, stats.sent),
        (1, 2, 2)
    );
}

#[tokio::test]
async fn revoke_before_delivery_withdraws_the_message() {
    let s = setup(RcsSimConfig {
        delivered_after: Duration::from_millis(300),
        ..quick()
    })
    .await;
    let rbm = connector(&s, false);
    let msg = message(&id(), "+48500100205");
    rbm.submit(&msg).await.unwrap();
    assert!(rbm.revoke(&msg).await.unwrap());
    assert!(!rbm.revoke(&message(&id(), "+48500100205")).await.unwrap());
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(s.hook.events().is_empty(), "{:?}", s.hook.events());
    let stats = s.sim.stats();
    assert_eq!(
        (stats.revoked, stats.revoke_too_late, stats.events_posted),
        (1, 1, 0)
    );
    assert!(s.sim.messages()[0].revoked);
}

#[tokio::test]
async fn revoke_after_delivery_is_too_late() {
    let s = setup(quick()).await;
    let rbm = connector(&s, false);
    let msg = message(&id(), "+48500100206");
    rbm.submit(&msg).await.unwrap();
    s.hook.wait_for(1).await;
    assert!(!rbm.revoke(&msg).await.unwrap());
    assert_eq!(s.sim.stats().revoke_too_late, 1);
}

#[tokio::test]
async fn silent_numbers_accept_but_never_deliver() {
    let s = setup(RcsSimConfig {
        silent_prefixes: vec!["+4879".into()],
        ..quick()
    })
    .await;
    let rbm = connector(&s, false);
    let msg = message(&id(), "+48790000001");
    rbm.submit(&msg).await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(s.hook.events().is_empty());
    assert!(rbm.revoke(&msg).await.unwrap());
}

#[tokio::test]
async fn throttling_carries_retry_after() {
    let s = setup(RcsSimConfig {
        max_tps: 1,
        ..quick()
    })
    .await;
    let rbm = connector(&s, false);
    rbm.submit(&message(&id(), "+48500100207")).await.unwrap();
    let err = rbm
        .submit(&message(&id(), "+48500100207"))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        DeliveryError::Throttled {
            retry_after: Some(Duration::from_secs(1))
        }
    );
    assert_eq!(s.sim.stats().throttled, 1);
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn a_bad_key_fails_at_build() {
    let s = setup(quick()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut demo: serde_json::Value = serde_json::from_str(rbm::demo_service_account()).unwrap();
    demo["private_key"] = json!("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
    let cases = [
        (dir.path().join("missing.json"), "cannot read"),
        (write(dir.path(), "text.json", "not json"), "not valid JSON"),
        (
            write(dir.path(), "pem.json", &demo.to_string()),
            "not a usable RSA key",
        ),
    ];
    for (path, want) in cases {
        let cfg = RcsConfig {
            service_account_key: path.clone(),
            ..rcs_config(&s, false)
        };
        match build(cfg) {
            Err(BuildError::Invalid { name, reason }) => {
                assert_eq!(name, "rbm");
                assert!(
                    reason.contains("service_account_key") && reason.contains(want),
                    "{reason}"
                );
            }
            other => panic!(
                "{}: expected BuildError::Invalid, got {other:?}",
                path.display()
            ),
        }
    }
    assert_eq!(s.sim.stats().tokens_issued, 0);
}

#[tokio::test]
async fn a_refused_service_account_takes_the_connector_down() {
    let s = setup(quick()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut other: serde_json::Value = serde_json::from_str(rbm::demo_service_account()).unwrap();
    other["client_email"] = json!("intruder@elsewhere.example");
    let key = write(dir.path(), "other.json", &other.to_string());
    let rbm = build(RcsConfig {
        service_account_key: key,
        ..rcs_config(&s, false)
    })
    .unwrap();
    let err = rbm
        .submit(&message(&id(), "+48500100208"))
        .await
        .unwrap_err();
    let DeliveryError::Unavailable { reason } = err else {
        panic!("expected Unavailable, got {err:?}");
    };
    assert!(
        reason.contains("refused service account intruder@elsewhere.example"),
        "{reason}"
    );
    assert!(reason.contains("invalid_grant"), "{reason}");
    assert!(
        matches!(rbm.health(), Health::Down(why) if why == format!("connector unavailable: {reason}"))
    );
    assert_eq!(s.sim.stats().token_rejected, 1);
}

#[tokio::test]
async fn connection_failures_degrade_health_and_cost_no_attempts() {
    let s = setup(quick()).await;
    // A port nothing listens on (bound, then released).
    let dead: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let rbm = build(RcsConfig {
        base_url: format!("http://{dead}"),
        ..rcs_config(&s, false)
    })
    .unwrap();
    for _ in 0..3 {
        let err = rbm
            .submit(&message(&id(), "+48500100209"))
            .await
            .unwrap_err();
        // Refused connections: the platform is unreachable, the message is not
        // at fault (retried without using up attempts).
        assert!(matches!(err, DeliveryError::Unavailable { .. }), "{err:?}");
    }
    assert!(matches!(rbm.health(), Health::Degraded(why) if why.contains(&dead.to_string())));
}
