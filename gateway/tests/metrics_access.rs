//! `/metrics` names tenants and connectors: it can be kept behind scraper keys
//! (`admin.metrics_keys`) or moved to a listener of its own
//! (`admin.metrics_listen`). Every route takes the `Bearer` scheme in any case.

use goniec_gateway::tenants::hash_key;
use goniec_testkit::free_port;
use goniec_testkit::gateway::{config_toml, parse, TestGateway, ACME_KEY, ADMIN_KEY};
use reqwest::Method;

const SCRAPER_KEY: &str = "prometheus-scraper-key-0123456789";

async fn metrics_status(gw: &TestGateway, auth: Option<&str>) -> u16 {
    let mut r = gw.http.get(gw.url("/metrics"));
    if let Some(a) = auth {
        r = r.header("authorization", a);
    }
    r.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn metrics_keys_protect_metrics_and_any_bearer_case_works() {
    let cfg = config_toml(None, "").replace(
        "[admin]\n",
        &format!("[admin]\nmetrics_keys = [\"{}\"]\n", hash_key(SCRAPER_KEY)),
    );
    let gw = TestGateway::start(parse(&cfg)).await;
    assert_eq!(metrics_status(&gw, None).await, 401);
    assert_eq!(
        metrics_status(&gw, Some(&format!("Bearer {ACME_KEY}"))).await,
        401,
        "a tenant key does not read metrics"
    );
    assert_eq!(
        metrics_status(&gw, Some(&format!("bearer {SCRAPER_KEY}"))).await,
        200
    );
    assert_eq!(
        metrics_status(&gw, Some(&format!("Bearer {ADMIN_KEY}"))).await,
        200,
        "operators read metrics too"
    );
    // The scheme is case-insensitive on admin routes as on tenant routes.
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let r = gw
            .http
            .get(gw.url("/v1/admin/held"))
            .header("authorization", format!("{scheme} {ADMIN_KEY}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{scheme}");
        let r = gw
            .http
            .get(gw.url("/v1/messages?client_ref=x"))
            .header("authorization", format!("{scheme} {ACME_KEY}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{scheme}");
    }
    let r = gw
        .req(Method::GET, "/v1/admin/held", ACME_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "a tenant key is no operator key");
    gw.stop().await;
}

#[tokio::test]
async fn metrics_can_have_a_listener_of_their_own() {
    let port = free_port();
    let cfg = config_toml(None, "").replace(
        "[admin]\n",
        &format!("[admin]\nmetrics_listen = \"127.0.0.1:{port}\"\n"),
    );
    let gw = TestGateway::start(parse(&cfg)).await;
    assert_eq!(
        metrics_status(&gw, None).await,
        404,
        "not on the API listener"
    );
    let r = gw
        .http
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("goniec_store_up"));
    let r = gw
        .http
        .get(format!("http://127.0.0.1:{port}/v1/messages"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "only metrics there");
    gw.stop().await;
}
