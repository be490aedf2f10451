//! A campaign from a CSV file with good and bad rows, delivered over the real
//! wire protocols: SMS over SMPP to the SMSC simulator, RCS to the RBM
//! simulator, e-mail over SMTP to the sink. The report's figures equal what the
//! simulators counted.

use std::time::{Duration, Instant};

use goniec_sims::rbm::{RcsSim, RcsSimConfig};
use goniec_sims::smsc::{SimConfig, SmscSim};
use goniec_sims::smtp_sink::{SinkConfig, SmtpSink};
use goniec_testkit::gateway::{config_toml, parse, TestGateway, OTHER_KEY};
use goniec_testkit::RedisServer;
use reqwest::Method;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

const AGENT: &str = "goniec-campaign-agent";
const CLIENT_TOKEN: &str = "rcs-client-token-0123456789";

async fn call(gw: &TestGateway, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = gw.req(method, path, OTHER_KEY);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csv_campaign_goes_out_over_smpp_rcs_and_smtp() {
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    let stop = CancellationToken::new();
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
    let key = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(key.path(), goniec_sims::rbm::DEMO_SERVICE_ACCOUNT).unwrap();
    let rcs_cfg = RcsSimConfig {
        agent_id: AGENT.into(),
        client_token: CLIENT_TOKEN.into(),
        service_account_key: Some(key.path().to_path_buf()),
        ..Default::default()
    };
    let rcs = RcsSim::start("127.0.0.1:0".parse().unwrap(), rcs_cfg, stop.clone())
        .await
        .unwrap();
    let sink = SmtpSink::start(
        "127.0.0.1:0".parse().unwrap(),
        SinkConfig::default(),
        stop.clone(),
    )
    .await
    .unwrap();
    let base = rcs.base_url();
    let extra = format!(
        r#"
[[connectors]]
name = "smsc"
kind = "smpp"
port = {port}
system_id = "{sid}"
password = "{pw}"

[[connectors]]
name = "rbm"
kind = "rcs"
base_url = "{base}"
token_uri = "{token}"
agent_id = "{AGENT}"
service_account_key = "{key}"
client_token = "{CLIENT_TOKEN}"
timeout = "5s"

[[connectors]]
name = "relay"
kind = "smtp"
port = {smtp}
tls = "none"
timeout = "5s"
from = "ACME <noreply@acme.example>"

[[routes]]
channel = "sms"
connector = "smsc"

[[routes]]
channel = "rcs"
connector = "rbm"

[[routes]]
channel = "email"
connector = "relay"
"#,
        port = smsc.local_addr().port(),
        sid = smsc_cfg.system_id,
        pw = smsc_cfg.password,
        token = rcs.token_uri(),
        key = key.path().display(),
        smtp = sink.local_addr().port(),
    );
    let gw = TestGateway::start(parse(&config_toml(Some(&redis.url()), &extra))).await;
    gw.wait_ready(200, Duration::from_secs(10)).await;
    rcs.set_webhook(Some(gw.url("/v1/webhooks/rcs")));

    for t in [
        json!({"id": "sms", "channel": "sms", "text": "Zaległość {{amount}} zł, termin {{due}}.",
            "vars": {"amount": {"format": "amount"}, "due": {"format": "date"}}}),
        json!({"id": "rcs", "channel": "rcs", "text": "Dzień dobry {{name}}, zaległość {{amount}} zł.",
            "vars": {"name": {"default": "Kliencie"}, "amount": {"format": "amount"}}}),
        json!({"id": "mail", "channel": "email", "email": {"subject": "Wyciąg: {{amount}} zł",
            "html": "<p>Dzień dobry {{name}}, termin {{due}}.</p>"},
            "vars": {"name": {"default": "Kliencie"}, "amount": {"format": "amount"}, "due": {"format": "date"}}}),
    ] {
        let (code, body) = call(&gw, Method::POST, "/v1/templates", Some(t)).await;
        assert_eq!(code, 201, "{body}");
    }
    let (code, body) = call(
        &gw,
        Method::POST,
        "/v1/campaigns",
        Some(json!({"name": "three channels", "steps": [
            {"channel": "sms", "template_id": "sms"},
            {"channel": "rcs", "template_id": "rcs", "fallback": ["sms"]},
            {"channel": "email", "template_id": "mail"}
        ]})),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    // Comma-separated, no BOM; rows 3 and 6 are bad (no e-mail, a bad date).
    let csv = "to,email,client_ref,name,amount,due\n\
        +48601000001,a@example.com,r1,Anna,100.5,2026-12-20\n\
        +48601000002,,r2,Jan,20,2026-12-20\n\
        +48601000003,c@example.com,r3,,30,2026-12-21\n\
        +48601000004,d@example.com,r4,Ewa,\"1,5\",2026-12-22\n\
        +48601000005,e@example.com,r5,Olek,7,31.12.2026\n\
        +48601000006,f@example.com,r6,Iza,8,2026-12-23\n";
    let r = gw
        .req(
            Method::PUT,
            &format!("/v1/campaigns/{id}/audience"),
            OTHER_KEY,
        )
        .header("content-type", "text/csv; charset=utf-8")
        .body(csv)
        .send()
        .await
        .unwrap();
    let up: Value = r.json().await.unwrap();
    assert_eq!(
        (up["accepted"].as_u64(), up["rejected"].as_u64()),
        (Some(4), Some(2)),
        "{up}"
    );
    let rejects = gw
        .req(
            Method::GET,
            &format!("/v1/campaigns/{id}/rejects"),
            OTHER_KEY,
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(rejects.contains("\r\n3;missing_email;"), "{rejects}");
    assert!(rejects.contains("\r\n6;invalid_value;"), "{rejects}");
    let (code, _) = call(
        &gw,
        Method::POST,
        &format!("/v1/campaigns/{id}/start"),
        None,
    )
    .await;
    assert_eq!(code, 200);

    // Until SMS and RCS are delivered (an e-mail ends at `submitted`: the
    // relay's 250 is all SMTP says).
    let deadline = Instant::now() + Duration::from_secs(30);
    let rep = loop {
        let (_, rep) = call(
            &gw,
            Method::GET,
            &format!("/v1/reports/campaigns/{id}"),
            None,
        )
        .await;
        let t = &rep["report"]["total"];
        if rep["state"] == "completed"
            && t["sent"].as_i64() == Some(12)
            && t["delivered"].as_i64() == Some(8)
        {
            break rep;
        }
        assert!(Instant::now() < deadline, "not all delivered: {rep}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let r = &rep["report"];
    // Counted by the simulators themselves.
    assert_eq!(smsc.stats().submits, 4, "SMS over SMPP");
    let rbm = rcs.messages();
    assert_eq!(rbm.len(), 4, "RCS to the RBM platform");
    let mails = sink.messages();
    assert_eq!(mails.len(), 4, "e-mail over SMTP");
    assert_eq!(r["steps"]["s0:sms"]["sent"], smsc.stats().submits);
    assert_eq!(r["steps"]["s1:rcs"]["sent"], rbm.len());
    assert_eq!(r["steps"]["s2:email"]["sent"], mails.len());
    assert_eq!(r["steps"]["s0:sms"]["delivered"], 4);
    assert_eq!(r["steps"]["s1:rcs"]["delivered"], 4);
    // The texts as the templates made them.
    let anna = rbm.iter().find(|m| m.phone == "+48601000001").unwrap();
    assert_eq!(
        anna.content["text"],
        "Dzień dobry Anna, zaległość 100,50 zł."
    );
    let parsed = mail_parser::MessageParser::default()
        .parse(
            &mails
                .iter()
                .find(|m| m.rcpts == ["d@example.com"])
                .unwrap()
                .data,
        )
        .unwrap();
    assert_eq!(parsed.subject(), Some("Wyciąg: 1,50 zł"));
    assert!(parsed
        .body_html(0)
        .unwrap()
        .contains("Dzień dobry Ewa, termin 22.12.2026."));
    gw.stop().await;
    stop.cancel();
}
