//! The SMPP connector against the SMSC simulator over real TCP on loopback.

use std::time::Duration;

use goniec_connectors::smpp::config::Config as SmppConfig;
use goniec_connectors::smpp::connector::SmppConnector;
use goniec_connectors::{BuildContext, Channel, Connector, Health, Outbound, ReceiptState};
use goniec_sims::smsc::{SimConfig, SmscSim};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// `query_sm` goes out with the id exactly as `submit_sm_resp` gave it (the
/// simulator knows no other spelling) and its answer reads as a receipt would.
#[tokio::test]
async fn query_asks_by_the_submitted_id_and_reads_the_answer() {
    let stop = CancellationToken::new();
    let sim_cfg = SimConfig {
        lose_receipts_every: 1,
        undeliverable_every: 2,
        receipt_delay: Duration::from_millis(20),
        ..SimConfig::default()
    };
    let sim = SmscSim::start("127.0.0.1:0".parse().unwrap(), sim_cfg, stop.clone())
        .await
        .unwrap();
    let cfg = SmppConfig {
        port: sim.local_addr().port(),
        password: "secret".into(),
        ..SmppConfig::default()
    };
    let (receipts, _r) = mpsc::channel(16);
    let (inbound, _i) = mpsc::channel(16);
    let cx = BuildContext {
        receipts,
        inbound,
        shutdown: stop.clone(),
    };
    let c = SmppConnector::new("smsc", &cfg, cx).unwrap();
    for _ in 0..200 {
        if c.health() == Health::Up {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let out = Outbound {
        message_id: "01J00000000000000000000000".into(),
        channel: Channel::Sms,
        to: "+48600100200".into(),
        from: None,
        text: Some("hej".into()),
        email: None,
        rcs: None,
        attempt: 0,
        valid_until: None,
    };
    let first = c.submit(&out).await.unwrap();
    let second = c.submit(&out).await.unwrap();
    assert_eq!(first.query_ids, ["0000000001"], "{first:?}");
    assert_eq!(first.provider_ids, ["1"], "stored normalised");
    tokio::time::sleep(Duration::from_millis(60)).await;
    let a = c.query(&out, &first.query_ids[0]).await.unwrap().unwrap();
    assert_eq!((a.state, a.error), (ReceiptState::Delivered, None));
    let a = c.query(&out, &second.query_ids[0]).await.unwrap().unwrap();
    assert_eq!(a.state, ReceiptState::Undeliverable);
    assert_eq!(a.error.as_deref(), Some("stat:UNDELIV err:001"));
    // The normalised id is not what the SMSC handed out: it does not know it.
    let a = c
        .query(&out, &first.provider_ids[0])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.state, ReceiptState::Unknown);
    assert!(a.error.unwrap().contains("ESME_RQUERYFAIL"));
    assert_eq!(sim.stats().receipts_lost, 2);
    c.close().await;
    stop.cancel();
}
